//! The forward pass: embedding, one recurrence per connection, the head, and the batch's loss
//! and predictions; with its AVX2 and AVX-512 builds.

use crate::nn::model::Readout;
use crate::nn::Variant;

use super::batch::NativeBatch;
use super::isa::Isa;
use super::kernels::{
    accumulate_rows, axpy, masked_weights, preactivation, sigmoid_in_place, tanh, tanh_in_place,
    Terms,
};
use super::layout::ConnectionLayout;
use super::workspace::{resize_for_overwrite, resize_zeroed, ConnectionState};
use super::{NativeNetwork, CLASSES};

/// Loss and predictions of one batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchOutcome {
    /// Batch-mean cross-entropy.
    pub loss: f64,
    pub correct: usize,
}

impl NativeNetwork {
    /// Logits `[2 × B]` (class-major) of a batch, keeping what backward needs.
    pub fn forward(&mut self, batch: &NativeBatch) -> &[f32] {
        match self.isa {
            // SAFETY: `isa` is only ever a path this CPU supports (`Isa::best`, `set_isa`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.forward_avx512(batch) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { self.forward_avx2(batch) },
            _ => self.forward_portable(batch),
        }
        &self.workspace.logits
    }

    /// [`NativeNetwork::forward`] compiled for AVX2 and FMA: the same operations in the same
    /// order as the portable build, eight lanes at a time (see [`Isa`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn forward_avx2(&mut self, batch: &NativeBatch) {
        self.forward_portable(batch);
    }

    /// [`NativeNetwork::forward`] compiled for AVX-512 (sixteen lanes; see [`Isa`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn forward_avx512(&mut self, batch: &NativeBatch) {
        self.forward_portable(batch);
    }

    #[inline(always)]
    fn forward_portable(&mut self, batch: &NativeBatch) {
        let (steps, size) = (batch.steps, batch.size);
        let layout = &self.layout;
        let params = &self.params;
        let mask = &self.mask;
        let ws = &mut self.workspace;
        let width0 = layout.embedding_width;
        resize_for_overwrite(&mut ws.embedded, steps * width0 * size);
        for t in 0..steps {
            for b in 0..size {
                let token = batch.tokens[t * size + b];
                let row = &params[token * width0..(token + 1) * width0];
                for (u, &value) in row.iter().enumerate() {
                    ws.embedded[(t * width0 + u) * size + b] = value;
                }
            }
        }
        ws.outputs
            .resize_with(layout.layer_sizes.len(), Default::default);
        ws.connections
            .resize_with(layout.connections.len(), Default::default);
        for (layer, &width) in layout.layer_sizes.iter().enumerate() {
            for (index, connection) in layout.connections.iter().enumerate() {
                if connection.target != layer {
                    continue;
                }
                let input = match connection.source {
                    Some(source) => &ws.outputs[source],
                    None => &ws.embedded,
                };
                let [masked_ih, masked_hh, _] = &mut ws.masked;
                forward_connection(
                    self.variant,
                    layout.dense,
                    connection,
                    params,
                    mask,
                    input,
                    steps,
                    size,
                    &mut ws.connections[index],
                    (masked_ih, masked_hh),
                );
            }
            let output = &mut ws.outputs[layer];
            resize_zeroed(output, steps * width * size);
            // Main connection first, then skips by source: the reference's order of additions.
            for (index, connection) in layout.connections.iter().enumerate() {
                if connection.target == layer {
                    for (o, h) in output.iter_mut().zip(&ws.connections[index].hidden) {
                        *o += h;
                    }
                }
            }
        }
        let last = layout.last_width();
        let final_output = &ws.outputs[layout.layer_sizes.len() - 1];
        resize_for_overwrite(&mut ws.features, last * size);
        for b in 0..size {
            let t = match self.readout {
                Readout::LastPadded => steps - 1,
                Readout::TrueLength => batch.lengths[b] - 1,
            };
            for u in 0..last {
                ws.features[u * size + b] = final_output[(t * last + u) * size + b];
            }
        }
        resize_for_overwrite(&mut ws.logits, CLASSES * size);
        for class in 0..CLASSES {
            let row = &mut ws.logits[class * size..(class + 1) * size];
            row.fill(params[layout.head_bias + class]);
            for u in 0..last {
                axpy(
                    params[layout.head_weight + class * last + u],
                    &ws.features[u * size..(u + 1) * size],
                    row,
                );
            }
        }
    }

    /// Loss and correct predictions of the last forward pass.
    pub(super) fn outcome(&self, batch: &NativeBatch) -> BatchOutcome {
        let logits = &self.workspace.logits;
        let size = batch.size;
        let mut loss = 0f64;
        let mut correct = 0;
        for b in 0..size {
            let (l0, l1) = (logits[b], logits[size + b]);
            let top = l0.max(l1);
            let log_sum = top + ((l0 - top).exp() + (l1 - top).exp()).ln();
            let label = batch.labels[b];
            loss += f64::from(log_sum - if label == 0 { l0 } else { l1 });
            // argmax takes the first of equal values.
            correct += usize::from(usize::from(l1 > l0) == label);
        }
        BatchOutcome {
            loss: loss / size as f64,
            correct,
        }
    }
}

/// Runs one recurrence over the whole sequence: gates[t] = W_ih·x[t] + b (+ W_hh·h[t−1]), then
/// the cell.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_connection(
    variant: Variant,
    dense: bool,
    c: &ConnectionLayout,
    params: &[f32],
    mask: &[f32],
    input: &[f32],
    steps: usize,
    size: usize,
    state: &mut ConnectionState,
    (dense_ih, dense_hh): (&mut Vec<f32>, &mut Vec<f32>),
) {
    let (hidden, width) = (c.hidden, c.input);
    let rows = variant.gate_count() as usize * hidden;
    let block = hidden * size;
    resize_for_overwrite(&mut state.gates, steps * rows * size);
    resize_for_overwrite(&mut state.hidden, steps * block);
    if matches!(variant, Variant::Lstm | Variant::Gru) {
        resize_for_overwrite(&mut state.aux, steps * block);
    }
    let weight_ih = &params[c.weight_ih..c.weight_ih + rows * width];
    let mask_ih = &mask[c.weight_ih..c.weight_ih + rows * width];
    let weight_hh = &params[c.weight_hh..c.weight_hh + rows * hidden];
    let mask_hh = &mask[c.weight_hh..c.weight_hh + rows * hidden];
    let bias_ih = &params[c.bias_ih..c.bias_ih + rows];
    let bias_hh = &params[c.bias_hh..c.bias_hh + rows];
    // The GRU keeps W_hn·h + b_hn apart (r multiplies it); the others fold b_hh in.
    let folded_rows = if variant == Variant::Gru {
        2 * hidden
    } else {
        rows
    };
    if dense {
        masked_weights(dense_ih, weight_ih, mask_ih, rows, width, false);
        masked_weights(dense_hh, weight_hh, mask_hh, rows, hidden, false);
    }
    let (dense_ih, dense_hh): (&[f32], &[f32]) = (dense_ih, dense_hh);
    for t in 0..steps {
        let (done, rest) = state.hidden.split_at_mut(t * block);
        let previous = (t > 0).then(|| &done[(t - 1) * block..]);
        let h = &mut rest[..block];
        let z = &mut state.gates[t * rows * size..(t + 1) * rows * size];
        let x = &input[t * width * size..(t + 1) * width * size];
        let bias = |j: usize| {
            if j < folded_rows {
                bias_ih[j] + bias_hh[j]
            } else {
                bias_ih[j]
            }
        };
        if dense {
            for j in 0..rows {
                z[j * size..(j + 1) * size].fill(bias(j));
            }
            accumulate_rows(z, dense_ih, width, x, size);
            if let Some(previous) = previous {
                accumulate_rows(
                    &mut z[..folded_rows * size],
                    &dense_hh[..folded_rows * hidden],
                    hidden,
                    previous,
                    size,
                );
            }
        } else {
            for j in 0..rows {
                let row = &mut z[j * size..(j + 1) * size];
                let (ih, mask_row) = (
                    &weight_ih[j * width..(j + 1) * width],
                    &mask_ih[j * width..(j + 1) * width],
                );
                let input_terms = Terms {
                    count: width,
                    weight: |p| ih[p] * mask_row[p],
                    sources: x,
                };
                match previous.filter(|_| j < folded_rows) {
                    Some(previous) => {
                        let hh = &weight_hh[j * hidden..(j + 1) * hidden];
                        let mask_row = &mask_hh[j * hidden..(j + 1) * hidden];
                        let recurrent_terms = Terms {
                            count: hidden,
                            weight: |k| hh[k] * mask_row[k],
                            sources: previous,
                        };
                        preactivation(row, bias(j), &input_terms, &recurrent_terms, size);
                    }
                    None => preactivation(row, bias(j), &input_terms, &Terms::none(), size),
                }
            }
        }
        match variant {
            Variant::RnnTanh => {
                h.copy_from_slice(z);
                tanh_in_place(h);
            }
            Variant::RnnRelu => {
                for (h, z) in h.iter_mut().zip(z.iter()) {
                    *h = z.max(0.0);
                }
            }
            Variant::Lstm => {
                let (aux_done, aux_rest) = state.aux.split_at_mut(t * block);
                let cell = &mut aux_rest[..block];
                let (ifg, o) = z.split_at_mut(3 * block);
                let (i, fg) = ifg.split_at_mut(block);
                let (f, g) = fg.split_at_mut(block);
                sigmoid_in_place(i);
                sigmoid_in_place(f);
                sigmoid_in_place(o);
                tanh_in_place(g);
                match previous.map(|_| &aux_done[(t - 1) * block..]) {
                    Some(cell_before) => {
                        for ((((c, &before), &f), &i), &g) in
                            cell.iter_mut().zip(cell_before).zip(&*f).zip(&*i).zip(&*g)
                        {
                            *c = f * before + i * g;
                        }
                    }
                    None => {
                        for ((c, &i), &g) in cell.iter_mut().zip(&*i).zip(&*g) {
                            *c = i * g;
                        }
                    }
                }
                for ((h, &o), &c) in h.iter_mut().zip(&*o).zip(&*cell) {
                    *h = o * tanh(c);
                }
            }
            Variant::Gru => {
                let hn = &mut state.aux[t * block..(t + 1) * block];
                for u in 0..hidden {
                    let row = &mut hn[u * size..(u + 1) * size];
                    let bias = bias_hh[2 * hidden + u];
                    match (previous, dense) {
                        (Some(previous), false) => {
                            let span = (2 * hidden + u) * hidden..(2 * hidden + u + 1) * hidden;
                            let (hh, mask_row) = (&weight_hh[span.clone()], &mask_hh[span]);
                            let recurrent_terms = Terms {
                                count: hidden,
                                weight: |k| hh[k] * mask_row[k],
                                sources: previous,
                            };
                            preactivation(row, bias, &recurrent_terms, &Terms::none(), size);
                        }
                        _ => row.fill(bias),
                    }
                }
                if let (Some(previous), true) = (previous, dense) {
                    accumulate_rows(hn, &dense_hh[2 * hidden * hidden..], hidden, previous, size);
                }
                let (rz, n) = z.split_at_mut(2 * block);
                sigmoid_in_place(rz);
                let (r, zg) = rz.split_at(block);
                for ((n, &r), &hn) in n.iter_mut().zip(r).zip(&*hn) {
                    *n = tanh(*n + r * hn);
                }
                match previous {
                    Some(previous) => {
                        for (((h, &z), &n), &before) in h.iter_mut().zip(zg).zip(&*n).zip(previous)
                        {
                            *h = (1.0 - z) * n + z * before;
                        }
                    }
                    None => {
                        for ((h, &z), &n) in h.iter_mut().zip(zg).zip(&*n) {
                            *h = (1.0 - z) * n;
                        }
                    }
                }
            }
        }
    }
}
