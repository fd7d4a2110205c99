//! The backward pass: cross-entropy gradients through the head, backpropagation through time
//! for each connection, and the embedding's gradients; with its AVX2 and AVX-512 builds.

use crate::nn::model::Readout;
use crate::nn::Variant;

use super::batch::NativeBatch;
use super::isa::Isa;
use super::kernels::{
    accumulate, accumulate_rows, axpy, dot, masked_weights, sum, tanh, weight_gradients,
};
use super::layout::ConnectionLayout;
use super::workspace::{resize_for_overwrite, resize_zeroed, ConnectionState};
use super::{NativeNetwork, CLASSES};

impl NativeNetwork {
    /// Gradients of the batch-mean cross-entropy of the last forward pass into `gradients()`.
    pub fn backward(&mut self, batch: &NativeBatch) {
        match self.isa {
            // SAFETY: `isa` is only ever a path this CPU supports (`Isa::best`, `set_isa`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.backward_avx512(batch) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { self.backward_avx2(batch) },
            _ => self.backward_portable(batch),
        }
    }

    /// [`NativeNetwork::backward`] compiled for AVX2 and FMA (see [`Isa`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_avx2(&mut self, batch: &NativeBatch) {
        self.backward_portable(batch);
    }

    /// [`NativeNetwork::backward`] compiled for AVX-512 (see [`Isa`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn backward_avx512(&mut self, batch: &NativeBatch) {
        self.backward_portable(batch);
    }

    #[inline(always)]
    fn backward_portable(&mut self, batch: &NativeBatch) {
        let (steps, size) = (batch.steps, batch.size);
        let layout = &self.layout;
        let params = &self.params;
        let mask = &self.mask;
        let grads = &mut self.grads;
        grads.fill(0.0);
        let ws = &mut self.workspace;
        let last = layout.last_width();
        // d logits = (softmax − one-hot) / B
        resize_for_overwrite(&mut ws.d_logits, CLASSES * size);
        let d_logits = &mut ws.d_logits;
        for b in 0..size {
            let (l0, l1) = (ws.logits[b], ws.logits[size + b]);
            let top = l0.max(l1);
            let (e0, e1) = ((l0 - top).exp(), (l1 - top).exp());
            let total = e0 + e1;
            let scale = 1.0 / size as f32;
            let label = batch.labels[b];
            d_logits[b] = (e0 / total - f32::from(u8::from(label == 0))) * scale;
            d_logits[size + b] = (e1 / total - f32::from(u8::from(label == 1))) * scale;
        }
        resize_zeroed(&mut ws.d_features, last * size);
        let d_features = &mut ws.d_features;
        for class in 0..CLASSES {
            let d_row = &d_logits[class * size..(class + 1) * size];
            grads[layout.head_bias + class] += sum(d_row);
            for u in 0..last {
                let feature = &ws.features[u * size..(u + 1) * size];
                grads[layout.head_weight + class * last + u] += dot(d_row, feature);
                axpy(
                    params[layout.head_weight + class * last + u],
                    d_row,
                    &mut d_features[u * size..(u + 1) * size],
                );
            }
        }
        let layer_count = layout.layer_sizes.len();
        ws.d_outputs.resize_with(layer_count, Default::default);
        for (layer, &width) in layout.layer_sizes.iter().enumerate() {
            resize_zeroed(&mut ws.d_outputs[layer], steps * width * size);
        }
        let width0 = layout.embedding_width;
        resize_zeroed(&mut ws.d_embedded, steps * width0 * size);
        {
            let d_final = &mut ws.d_outputs[layer_count - 1];
            for b in 0..size {
                let t = match self.readout {
                    Readout::LastPadded => steps - 1,
                    Readout::TrueLength => batch.lengths[b] - 1,
                };
                for u in 0..last {
                    d_final[(t * last + u) * size + b] += d_features[u * size + b];
                }
            }
        }
        for layer in (0..layer_count).rev() {
            let (below, above) = ws.d_outputs.split_at_mut(layer);
            let d_output = &above[0];
            for (index, connection) in layout.connections.iter().enumerate() {
                if connection.target != layer {
                    continue;
                }
                let (input, d_input) = match connection.source {
                    Some(source) => (&ws.outputs[source], &mut below[source]),
                    None => (&ws.embedded, &mut ws.d_embedded),
                };
                backward_connection(
                    self.variant,
                    layout.dense,
                    connection,
                    params,
                    mask,
                    input,
                    &ws.connections[index],
                    d_output,
                    d_input,
                    grads,
                    steps,
                    size,
                    BackwardScratch {
                        d_gates: &mut ws.d_gates,
                        d_aux: &mut ws.d_aux,
                        d_hidden: &mut ws.d_hidden,
                        d_hidden_next: &mut ws.d_hidden_next,
                        d_cell_next: &mut ws.d_cell_next,
                        zeros: &mut ws.zeros,
                        masked: &mut ws.masked,
                    },
                );
            }
        }
        for t in 0..steps {
            for b in 0..size {
                let token = batch.tokens[t * size + b];
                for u in 0..width0 {
                    grads[token * width0 + u] += ws.d_embedded[(t * width0 + u) * size + b];
                }
            }
        }
    }
}

/// Scratch buffers of one connection's backward pass.
struct BackwardScratch<'a> {
    d_gates: &'a mut Vec<f32>,
    d_aux: &'a mut Vec<f32>,
    d_hidden: &'a mut Vec<f32>,
    d_hidden_next: &'a mut Vec<f32>,
    d_cell_next: &'a mut Vec<f32>,
    zeros: &'a mut Vec<f32>,
    masked: &'a mut [Vec<f32>; 3],
}

/// Backpropagation through time for one recurrence: accumulates its parameter gradients and
/// the gradient of its input sequence.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_connection(
    variant: Variant,
    dense: bool,
    c: &ConnectionLayout,
    params: &[f32],
    mask: &[f32],
    input: &[f32],
    state: &ConnectionState,
    d_output: &[f32],
    d_input: &mut [f32],
    grads: &mut [f32],
    steps: usize,
    size: usize,
    scratch: BackwardScratch<'_>,
) {
    let (hidden, width) = (c.hidden, c.input);
    let rows = variant.gate_count() as usize * hidden;
    let block = hidden * size;
    let gate_block = rows * size;
    let BackwardScratch {
        d_gates,
        d_aux,
        d_hidden,
        d_hidden_next,
        d_cell_next,
        zeros,
        masked: [dense_direct_t, dense_n_t, dense_ih_t],
    } = scratch;
    resize_zeroed(zeros, block);
    resize_for_overwrite(d_gates, steps * gate_block);
    if variant == Variant::Gru {
        resize_for_overwrite(d_aux, steps * block);
    }
    resize_zeroed(d_hidden, block);
    resize_zeroed(d_hidden_next, block);
    resize_zeroed(d_cell_next, block);
    let weight_hh = &params[c.weight_hh..c.weight_hh + rows * hidden];
    let mask_hh = &mask[c.weight_hh..c.weight_hh + rows * hidden];
    let direct_rows = if variant == Variant::Gru {
        2 * hidden
    } else {
        rows
    };
    // Dense: (W_hh ∘ M)ᵀ of the direct rows (`hidden × direct_rows`) and of the GRU's n rows.
    if dense {
        let split = direct_rows * hidden;
        masked_weights(
            dense_direct_t,
            &weight_hh[..split],
            &mask_hh[..split],
            direct_rows,
            hidden,
            true,
        );
        masked_weights(
            dense_n_t,
            &weight_hh[split..],
            &mask_hh[split..],
            rows - direct_rows,
            hidden,
            true,
        );
    }
    for t in (0..steps).rev() {
        for ((d, &external), &carried) in d_hidden
            .iter_mut()
            .zip(&d_output[t * block..(t + 1) * block])
            .zip(&*d_hidden_next)
        {
            *d = external + carried;
        }
        let gates = &state.gates[t * gate_block..(t + 1) * gate_block];
        let dz = &mut d_gates[t * gate_block..(t + 1) * gate_block];
        let h = &state.hidden[t * block..(t + 1) * block];
        let previous = (t > 0).then(|| &state.hidden[(t - 1) * block..t * block]);
        d_hidden_next.fill(0.0);
        match variant {
            Variant::RnnTanh => {
                for ((dz, &dh), &h) in dz.iter_mut().zip(&*d_hidden).zip(h) {
                    *dz = dh * (1.0 - h * h);
                }
            }
            Variant::RnnRelu => {
                for ((dz, &dh), &h) in dz.iter_mut().zip(&*d_hidden).zip(h) {
                    *dz = if h > 0.0 { dh } else { 0.0 };
                }
            }
            Variant::Lstm => {
                let cell = &state.aux[t * block..(t + 1) * block];
                let cell_before = if t > 0 {
                    &state.aux[(t - 1) * block..t * block]
                } else {
                    &zeros[..block]
                };
                let (i, rest) = gates.split_at(block);
                let (f, rest) = rest.split_at(block);
                let (g, o) = rest.split_at(block);
                let o = &o[..block];
                let (dzi, rest) = dz.split_at_mut(block);
                let (dzf, rest) = rest.split_at_mut(block);
                let (dzg, dzo) = rest.split_at_mut(block);
                let dzo = &mut dzo[..block];
                let d_hidden = &d_hidden[..block];
                let d_cell_next = &mut d_cell_next[..block];
                for e in 0..block {
                    let tanh_cell = tanh(cell[e]);
                    let dc = d_hidden[e] * o[e] * (1.0 - tanh_cell * tanh_cell) + d_cell_next[e];
                    dzo[e] = d_hidden[e] * tanh_cell * o[e] * (1.0 - o[e]);
                    dzi[e] = dc * g[e] * i[e] * (1.0 - i[e]);
                    dzg[e] = dc * i[e] * (1.0 - g[e] * g[e]);
                    dzf[e] = dc * cell_before[e] * f[e] * (1.0 - f[e]);
                    d_cell_next[e] = dc * f[e];
                }
            }
            Variant::Gru => {
                let hn = &state.aux[t * block..(t + 1) * block];
                let dhn = &mut d_aux[t * block..(t + 1) * block];
                let before = previous.unwrap_or(&zeros[..block]);
                let (r, rest) = gates.split_at(block);
                let (zg, n) = rest.split_at(block);
                let n = &n[..block];
                let (dzr, rest) = dz.split_at_mut(block);
                let (dzz, dzn) = rest.split_at_mut(block);
                let dzn = &mut dzn[..block];
                let d_hidden = &d_hidden[..block];
                let d_hidden_next = &mut d_hidden_next[..block];
                for e in 0..block {
                    let dh = d_hidden[e];
                    let dn = dh * (1.0 - zg[e]);
                    dzz[e] = dh * (before[e] - n[e]) * zg[e] * (1.0 - zg[e]);
                    let dpre_n = dn * (1.0 - n[e] * n[e]);
                    dzn[e] = dpre_n;
                    dhn[e] = dpre_n * r[e];
                    dzr[e] = dpre_n * hn[e] * r[e] * (1.0 - r[e]);
                    d_hidden_next[e] = dh * zg[e];
                }
            }
        }
        if t > 0 {
            // d h[t−1] += W_hhᵀ · d(hidden-side pre-activations)
            // (rows in ascending order; the GRU's n rows come from W_hn·h's gradient).
            let d_recurrent: &[f32] = dz;
            if dense {
                // All direct terms of a lane, then the GRU's n terms, as below.
                accumulate_rows(
                    d_hidden_next,
                    dense_direct_t,
                    direct_rows,
                    d_recurrent,
                    size,
                );
                if variant == Variant::Gru {
                    accumulate_rows(
                        d_hidden_next,
                        dense_n_t,
                        hidden,
                        &d_aux[t * block..(t + 1) * block],
                        size,
                    );
                }
            } else {
                for k in 0..hidden {
                    let out = &mut d_hidden_next[k * size..(k + 1) * size];
                    accumulate(
                        out,
                        direct_rows,
                        |j| weight_hh[j * hidden + k] * mask_hh[j * hidden + k],
                        d_recurrent,
                        size,
                    );
                    if variant == Variant::Gru {
                        accumulate(
                            out,
                            hidden,
                            |u| {
                                let index = (2 * hidden + u) * hidden + k;
                                weight_hh[index] * mask_hh[index]
                            },
                            &d_aux[t * block..(t + 1) * block],
                            size,
                        );
                    }
                }
            }
        }
    }
    // Parameter gradients, summed over time.
    let gru = variant == Variant::Gru;
    for j in 0..rows {
        let mut d_bias_ih = 0f32;
        let mut d_bias_hh = 0f32;
        for t in 0..steps {
            let d_row = &d_gates[(t * rows + j) * size..(t * rows + j + 1) * size];
            let s = sum(d_row);
            d_bias_ih += s;
            if gru && j >= 2 * hidden {
                let u = j - 2 * hidden;
                d_bias_hh += sum(&d_aux[(t * hidden + u) * size..(t * hidden + u + 1) * size]);
            } else {
                d_bias_hh += s;
            }
        }
        grads[c.bias_ih + j] += d_bias_ih;
        grads[c.bias_hh + j] += d_bias_hh;
    }
    let weight_ih = &params[c.weight_ih..c.weight_ih + rows * width];
    let mask_ih = &mask[c.weight_ih..c.weight_ih + rows * width];
    {
        let (d_gates, d_aux): (&[f32], &[f32]) = (d_gates, d_aux);
        let gate_row =
            |t: usize, j: usize| &d_gates[(t * rows + j) * size..(t * rows + j + 1) * size];
        weight_gradients(
            &mut grads[c.weight_hh..c.weight_hh + rows * hidden],
            mask_hh,
            rows,
            hidden,
            1..steps,
            |t, j| {
                if gru && j >= 2 * hidden {
                    let u = j - 2 * hidden;
                    &d_aux[(t * hidden + u) * size..(t * hidden + u + 1) * size]
                } else {
                    gate_row(t, j)
                }
            },
            |t, k| &state.hidden[((t - 1) * hidden + k) * size..((t - 1) * hidden + k + 1) * size],
        );
        weight_gradients(
            &mut grads[c.weight_ih..c.weight_ih + rows * width],
            mask_ih,
            rows,
            width,
            0..steps,
            gate_row,
            |t, p| &input[(t * width + p) * size..(t * width + p + 1) * size],
        );
    }
    if dense {
        // d x[t] += (W_ih ∘ M)ᵀ · d gates[t]
        masked_weights(dense_ih_t, weight_ih, mask_ih, rows, width, true);
        for t in 0..steps {
            accumulate_rows(
                &mut d_input[t * width * size..(t + 1) * width * size],
                dense_ih_t,
                rows,
                &d_gates[t * gate_block..(t + 1) * gate_block],
                size,
            );
        }
    } else {
        // d x[t] += W_ihᵀ · d gates[t] (masked weights contribute nothing).
        for t in 0..steps {
            let d_rows = &d_gates[t * gate_block..(t + 1) * gate_block];
            for p in 0..width {
                let out = &mut d_input[(t * width + p) * size..(t * width + p + 1) * size];
                accumulate(
                    out,
                    rows,
                    |j| weight_ih[j * width + p] * mask_ih[j * width + p],
                    d_rows,
                    size,
                );
            }
        }
    }
}
