//! Activation and gradient buffers reused from batch to batch.

/// Per-connection activations of one forward pass, each `[T × F × B]`.
#[derive(Default)]
pub(super) struct ConnectionState {
    /// Activated gates (RNN: unused; LSTM: i, f, g, o; GRU: r, z, n).
    pub(super) gates: Vec<f32>,
    pub(super) hidden: Vec<f32>,
    /// LSTM: cell state; GRU: W_hn·h + b_hn.
    pub(super) aux: Vec<f32>,
}

/// Buffers reused from batch to batch.
#[derive(Default)]
pub(super) struct Workspace {
    pub(super) embedded: Vec<f32>,
    pub(super) outputs: Vec<Vec<f32>>,
    pub(super) connections: Vec<ConnectionState>,
    pub(super) d_embedded: Vec<f32>,
    pub(super) d_outputs: Vec<Vec<f32>>,
    /// Pre-activation gradients `[T × G·H × B]` (GRU: of the input side).
    pub(super) d_gates: Vec<f32>,
    /// GRU only: gradient of W_hn·h + b_hn, `[T × H × B]`.
    pub(super) d_aux: Vec<f32>,
    pub(super) d_hidden: Vec<f32>,
    pub(super) d_hidden_next: Vec<f32>,
    pub(super) d_cell_next: Vec<f32>,
    pub(super) zeros: Vec<f32>,
    pub(super) features: Vec<f32>,
    pub(super) logits: Vec<f32>,
    pub(super) d_logits: Vec<f32>,
    pub(super) d_features: Vec<f32>,
    /// A dense connection's masked weights of this batch, forward (`W ∘ M`) and backward
    /// (`(W ∘ M)ᵀ`: hidden-side direct rows, the GRU's n rows, input side).
    pub(super) masked: [Vec<f32>; 3],
}

/// For buffers every element of which is written before it is read: no clearing.
pub(super) fn resize_for_overwrite(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}

pub(super) fn resize_zeroed(buffer: &mut Vec<f32>, len: usize) {
    buffer.clear();
    buffer.resize(len, 0.0);
}
