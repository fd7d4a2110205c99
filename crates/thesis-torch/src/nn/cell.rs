//! Recurrent cell mathematics (PyTorch's equations and gate order) as functions of weight tensors.
//!
//! A layer is computed in two parts: the input projection of all time steps at once (one matmul
//! over `[T·B, in]`), then a time loop that only does the hidden matmul and the gate arithmetic.
//! Masks are applied by the caller ([`LayerWeights::masked`]) as `W ∘ M` inside the autograd
//! graph, so masked entries get exactly zero gradient. Inputs are time-major `[T, …, B, in]` and
//! weights `[…, G·H, in]`: the `…` axes broadcast through `matmul`, which leaves room for a
//! network axis when many small networks are batched (their biases then need shape `[…, 1, G·H]`).

use tch::{TchError, Tensor};

pub use pipe_thesis::model::{CellEngine, Variant};

/// The weights one recurrent layer computes with (already multiplied by their masks).
#[derive(Debug)]
pub struct LayerWeights {
    /// `[…, G·H, in]`
    pub weight_ih: Tensor,
    /// `[…, G·H, H]`
    pub weight_hh: Tensor,
    /// `[…, G·H]` (or broadcastable against `[…, B, G·H]`)
    pub bias_ih: Tensor,
    /// `[…, G·H]` (or broadcastable against `[…, B, G·H]`)
    pub bias_hh: Tensor,
}

impl LayerWeights {
    /// Effective weights `W_ih ∘ M_ih`, `W_hh ∘ M_hh`; the products stay in the autograd graph,
    /// which is what gives masked entries exactly zero gradient.
    pub fn masked(
        weight_ih: &Tensor,
        mask_ih: &Tensor,
        weight_hh: &Tensor,
        mask_hh: &Tensor,
        bias_ih: &Tensor,
        bias_hh: &Tensor,
    ) -> Result<Self, TchError> {
        Ok(LayerWeights {
            weight_ih: weight_ih.f_mul(mask_ih)?,
            weight_hh: weight_hh.f_mul(mask_hh)?,
            bias_ih: bias_ih.shallow_clone(),
            bias_hh: bias_hh.shallow_clone(),
        })
    }

    fn hidden_size(&self) -> Result<i64, TchError> {
        self.weight_hh
            .size()
            .last()
            .copied()
            .ok_or_else(|| TchError::Shape("weight_hh has no dimensions".to_string()))
    }
}

/// `x · Wᵀ + b` over the last axis; one fused addmm when the weight is a plain matrix.
fn affine(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TchError> {
    if weight.dim() == 2 {
        x.f_linear(weight, Some(bias))
    } else if x.dim() == 4 && weight.dim() == 3 {
        // Stacked networks, x [T, N, B, in] and weight [N, G·H, in]: one bmm over [N, T·B, in].
        // A broadcasting matmul would materialise the weight (and its gradient) T times.
        let (steps, members, batch, width) = x.size4()?;
        if weight.size()[0] != members {
            return x.f_matmul(&weight.f_transpose(-1, -2)?)?.f_add(bias);
        }
        let projected = x
            .f_permute([1, 0, 2, 3])?
            .f_reshape([members, steps * batch, width])?
            .f_bmm(&weight.f_transpose(-1, -2)?)?;
        let gates = projected.size()[2];
        projected
            .f_reshape([members, steps, batch, gates])?
            .f_permute([1, 0, 2, 3])?
            .f_add(bias)
    } else {
        x.f_matmul(&weight.f_transpose(-1, -2)?)?.f_add(bias)
    }
}

/// `base + h · W_tᵀ` where `weight_t` is already transposed; one addmm for plain matrices.
fn add_hidden_projection(base: &Tensor, h: &Tensor, weight_t: &Tensor) -> Result<Tensor, TchError> {
    if weight_t.dim() == 2 && h.dim() == 2 {
        base.f_addmm(h, weight_t)
    } else {
        base.f_add(&h.f_matmul(weight_t)?)
    }
}

/// Runs one recurrent layer over a time-major input `[T, …, B, in]` from a zero initial state and
/// returns the hidden state of every step, `[T, …, B, H]`.
pub fn run_layer(
    variant: Variant,
    input: &Tensor,
    weights: &LayerWeights,
) -> Result<Tensor, TchError> {
    let bias = projection_bias(variant, &weights.bias_ih, &weights.bias_hh)?;
    let projected = affine(input, &weights.weight_ih, &bias)?;
    run_projected(variant, &projected, &weights.weight_hh, &weights.bias_hh)
}

/// The bias that can be added to the input projection once for all time steps: both biases for
/// the plain RNNs and LSTM, only `b_ih` for GRU (its `b_hn` sits inside `r ∘ (W_hn h + b_hn)`, so
/// [`run_projected`] adds `b_hh` per step).
pub fn projection_bias(
    variant: Variant,
    bias_ih: &Tensor,
    bias_hh: &Tensor,
) -> Result<Tensor, TchError> {
    match variant {
        Variant::RnnTanh | Variant::RnnRelu | Variant::Lstm => bias_ih.f_add(bias_hh),
        Variant::Gru => Ok(bias_ih.shallow_clone()),
    }
}

/// The time loop of a recurrent layer whose input projection `x W_ihᵀ + b` (with the bias of
/// [`projection_bias`]) is already computed for every step: `projected` is `[T, …, B, G·H]`,
/// `weight_hh` `[…, G·H, H]`, `bias_hh` broadcastable against `[…, B, G·H]` (read by GRU only).
/// Callers that build the projection themselves (several inputs summed, as the randomly
/// structured networks do) share the cell mathematics this way. Returns `[T, …, B, H]`.
pub fn run_projected(
    variant: Variant,
    projected: &Tensor,
    weight_hh: &Tensor,
    bias_hh: &Tensor,
) -> Result<Tensor, TchError> {
    let hidden = weight_hh
        .size()
        .last()
        .copied()
        .ok_or_else(|| TchError::Shape("weight_hh has no dimensions".to_string()))?;
    let mut state_shape = projected.size();
    if state_shape.len() < 2 {
        return Err(TchError::Shape(format!(
            "recurrent input must be [T, …, B, in], got {state_shape:?}"
        )));
    }
    state_shape.remove(0);
    if let Some(last) = state_shape.last_mut() {
        *last = hidden;
    }
    let zeros = Tensor::f_zeros(&state_shape, (projected.kind(), projected.device()))?;
    let weight_hh_t = weight_hh.f_transpose(-1, -2)?;
    let outputs = match variant {
        Variant::Lstm => lstm_loop(projected, &weight_hh_t, zeros, hidden)?,
        Variant::RnnTanh | Variant::RnnRelu => {
            rnn_loop(variant == Variant::RnnTanh, projected, &weight_hh_t, zeros)?
        }
        Variant::Gru => gru_loop(projected, &weight_hh_t, bias_hh, zeros, hidden)?,
    };
    Tensor::f_stack(&outputs, 0)
}

/// h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
fn rnn_loop(
    use_tanh: bool,
    projected: &Tensor,
    weight_hh_t: &Tensor,
    initial: Tensor,
) -> Result<Vec<Tensor>, TchError> {
    let mut h = initial;
    let mut outputs = Vec::with_capacity(projected.size().first().copied().unwrap_or(0) as usize);
    for step_input in projected.f_unbind(0)? {
        let pre = add_hidden_projection(&step_input, &h, weight_hh_t)?;
        h = if use_tanh {
            pre.f_tanh()?
        } else {
            pre.f_relu()?
        };
        outputs.push(h.shallow_clone());
    }
    Ok(outputs)
}

/// Gates i, f, g, o: c' = f ∘ c + i ∘ g, h' = o ∘ tanh(c').
fn lstm_loop(
    projected: &Tensor,
    weight_hh_t: &Tensor,
    initial: Tensor,
    hidden: i64,
) -> Result<Vec<Tensor>, TchError> {
    let mut c = initial.shallow_clone();
    let mut h = initial;
    let mut outputs = Vec::with_capacity(projected.size().first().copied().unwrap_or(0) as usize);
    for step_input in projected.f_unbind(0)? {
        let gates = add_hidden_projection(&step_input, &h, weight_hh_t)?;
        // One sigmoid over all four blocks (g's result is unused) beats three separate calls:
        // on these small tensors the per-op overhead dominates.
        let sigmoids = gates.f_sigmoid()?;
        let input_gate = sigmoids.f_narrow(-1, 0, hidden)?;
        let forget_gate = sigmoids.f_narrow(-1, hidden, hidden)?;
        let output_gate = sigmoids.f_narrow(-1, 3 * hidden, hidden)?;
        let cell_gate = gates.f_narrow(-1, 2 * hidden, hidden)?.f_tanh()?;
        c = forget_gate.f_mul(&c)?.f_addcmul(&input_gate, &cell_gate)?;
        h = output_gate.f_mul(&c.f_tanh()?)?;
        outputs.push(h.shallow_clone());
    }
    Ok(outputs)
}

/// Gates r, z, n: n = tanh(W_in x + b_in + r ∘ (W_hn h + b_hn)), h' = (1 − z) ∘ n + z ∘ h,
/// computed as PyTorch does: (h − n) ∘ z + n.
fn gru_loop(
    projected: &Tensor,
    weight_hh_t: &Tensor,
    bias_hh: &Tensor,
    initial: Tensor,
    hidden: i64,
) -> Result<Vec<Tensor>, TchError> {
    let mut h = initial;
    let mut outputs = Vec::with_capacity(projected.size().first().copied().unwrap_or(0) as usize);
    for step_input in projected.f_unbind(0)? {
        let hidden_part = add_hidden_projection(bias_hh, &h, weight_hh_t)?;
        let reset_update = step_input
            .f_narrow(-1, 0, 2 * hidden)?
            .f_add(&hidden_part.f_narrow(-1, 0, 2 * hidden)?)?
            .f_sigmoid()?;
        let reset_gate = reset_update.f_narrow(-1, 0, hidden)?;
        let update_gate = reset_update.f_narrow(-1, hidden, hidden)?;
        let new_gate = step_input
            .f_narrow(-1, 2 * hidden, hidden)?
            .f_add(&reset_gate.f_mul(&hidden_part.f_narrow(-1, 2 * hidden, hidden)?)?)?
            .f_tanh()?;
        h = h.f_sub(&new_gate)?.f_mul(&update_gate)?.f_add(&new_gate)?;
        outputs.push(h.shallow_clone());
    }
    Ok(outputs)
}

/// Runs a stack of layers (each layer's outputs feed the next) with the chosen engine; returns
/// the last layer's hidden states `[T, B, H]`. The fused engine needs plain 2-D weights.
pub fn run_stack(
    variant: Variant,
    engine: CellEngine,
    input: &Tensor,
    layers: &[LayerWeights],
) -> Result<Tensor, TchError> {
    match engine {
        CellEngine::Loop => {
            let mut current = input.shallow_clone();
            for weights in layers {
                current = run_layer(variant, &current, weights)?;
            }
            Ok(current)
        }
        CellEngine::Fused => run_fused(variant, input, layers),
    }
}

/// libtorch's multi-layer recurrent kernels on the given (masked) weights, time-major input.
fn run_fused(
    variant: Variant,
    input: &Tensor,
    layers: &[LayerWeights],
) -> Result<Tensor, TchError> {
    let first = layers
        .first()
        .ok_or_else(|| TchError::Shape("a recurrent stack needs at least one layer".to_string()))?;
    let hidden = first.hidden_size()?;
    let batch = input
        .size()
        .get(1)
        .copied()
        .ok_or_else(|| TchError::Shape("fused input must be [T, B, in]".to_string()))?;
    let num_layers = layers.len() as i64;
    let zeros = Tensor::f_zeros([num_layers, batch, hidden], (input.kind(), input.device()))?;
    let params: Vec<&Tensor> = layers
        .iter()
        .flat_map(|w| [&w.weight_ih, &w.weight_hh, &w.bias_ih, &w.bias_hh])
        .collect();
    let zeros_ref = &zeros;
    // has_biases, layers, dropout 0, train (irrelevant without dropout), unidirectional, time-major
    let output = match variant {
        Variant::Lstm => {
            input
                .f_lstm(
                    &[zeros_ref, zeros_ref],
                    &params,
                    true,
                    num_layers,
                    0.0,
                    true,
                    false,
                    false,
                )?
                .0
        }
        Variant::Gru => {
            input
                .f_gru(&zeros, &params, true, num_layers, 0.0, true, false, false)?
                .0
        }
        Variant::RnnTanh => {
            input
                .f_rnn_tanh(&zeros, &params, true, num_layers, 0.0, true, false, false)?
                .0
        }
        Variant::RnnRelu => {
            input
                .f_rnn_relu(&zeros, &params, true, num_layers, 0.0, true, false, false)?
                .0
        }
    };
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip_through_serde_and_from_str() {
        for variant in Variant::ALL {
            let json = serde_json::to_string(&variant).unwrap();
            assert_eq!(json, format!("\"{}\"", variant.name()));
            let back: Variant = serde_json::from_str(&json).unwrap();
            assert_eq!(back, variant);
            assert_eq!(variant.name().parse::<Variant>().unwrap(), variant);
        }
        assert!("elman".parse::<Variant>().is_err());
    }

    #[test]
    fn layer_output_has_time_major_shape() {
        let _torch = crate::nn::TorchThreads::acquire(1);
        for variant in Variant::ALL {
            let gates = variant.gate_count() * 4;
            let weights = LayerWeights {
                weight_ih: Tensor::randn([gates, 3], tch::kind::FLOAT_CPU),
                weight_hh: Tensor::randn([gates, 4], tch::kind::FLOAT_CPU),
                bias_ih: Tensor::randn([gates], tch::kind::FLOAT_CPU),
                bias_hh: Tensor::randn([gates], tch::kind::FLOAT_CPU),
            };
            let input = Tensor::randn([5, 2, 3], tch::kind::FLOAT_CPU);
            let output = run_layer(variant, &input, &weights).unwrap();
            assert_eq!(output.size(), vec![5, 2, 4]);
        }
    }
}
