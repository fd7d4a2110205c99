//! Randomly structured networks computed natively: forward and backward passes written out in
//! plain Rust over `f32` buffers, one network per thread, no libtorch.
//!
//! Why: these networks are tiny (8 layers of ~4 units on average, ~28 recurrences) and train at
//! batch 128, so on libtorch every one of the thousands of small operations per batch costs more
//! in dispatch, autograd bookkeeping and memory traffic than in arithmetic, and batching networks
//! into padded groups ([`super::random::NetworkGroup`]) wastes most of its work on padding. Here
//! each network keeps its exact shapes, every activation is stored feature-major (`[features ×
//! batch]` per time step) so that every inner loop runs over the 128 sequences of the batch and
//! vectorises, gate arithmetic is fused into one pass, masked input weights are skipped, and
//! networks run in parallel on rayon's threads. The mathematics is that of
//! [`super::random::RandomNetwork`] (the libtorch reference), which the tests compare against.
//!
//! The stacked model of the base and pruning experiments is the chain case of such a network
//! ([`NativeNetwork::from_model`]): there the matrices are dense (50 × 50 and up), so the
//! recurrences use dense kernels ([`accumulate_rows`], [`weight_gradients`]) instead of the
//! term-by-term ones, and hidden-to-hidden masks hold the pruned weights at zero.
//!
//! Determinism: each network is computed by one thread in a fixed order with no fused
//! multiply-add, so results are bit-identical across runs and thread counts.

use rayon::prelude::*;

use std::path::Path;

use tch::{Kind, Tensor};

use super::batch::Example;
use super::model::{Readout, RecurrentModel, WeightKind};
use super::random::{Connection, NetworkStructure, RandomNetwork, CLASS_COUNT, VOCAB_SIZE};
use super::tensors::{
    read_safetensors_map, reject_leftovers, take_checked, write_safetensors_atomic,
};
use super::train::epoch_order;
use super::{NnError, NnResult, Variant};
use crate::nn::AdamConfig;

const CLASSES: usize = CLASS_COUNT as usize;
const VOCAB: usize = VOCAB_SIZE as usize;

/// Where one connection's parameters live in the flat parameter vector.
#[derive(Clone, Debug)]
struct ConnectionLayout {
    /// Layer read (`None`: the embedding).
    source: Option<usize>,
    target: usize,
    input: usize,
    hidden: usize,
    weight_ih: usize,
    weight_hh: usize,
    bias_ih: usize,
    bias_hh: usize,
}

/// Offsets of every parameter in `RandomNetwork::named_parameters` order.
#[derive(Clone, Debug)]
struct Layout {
    gates: usize,
    /// Width of the embedding (the input of layer 0's main connection).
    embedding_width: usize,
    /// Dense matrices (the stacked model): computed with [`accumulate_rows`] and
    /// [`weight_gradients`] rather than term by term with zero weights skipped.
    dense: bool,
    layer_sizes: Vec<usize>,
    connections: Vec<ConnectionLayout>,
    head_weight: usize,
    head_bias: usize,
    total: usize,
}

impl Layout {
    fn new(structure: &NetworkStructure, variant: Variant, embedding_width: usize) -> Self {
        let gates = variant.gate_count() as usize;
        let sizes = &structure.layer_sizes;
        let mut offset = VOCAB * embedding_width;
        let connections = structure
            .connections
            .iter()
            .map(|c| {
                let hidden = sizes[c.target];
                let input = c.source.map_or(embedding_width, |s| sizes[s]);
                let rows = gates * hidden;
                let layout = ConnectionLayout {
                    source: c.source,
                    target: c.target,
                    input,
                    hidden,
                    weight_ih: offset,
                    weight_hh: offset + rows * input,
                    bias_ih: offset + rows * (input + hidden),
                    bias_hh: offset + rows * (input + hidden + 1),
                };
                offset += rows * (input + hidden + 2);
                layout
            })
            .collect();
        let last = sizes[sizes.len() - 1];
        let head_weight = offset;
        let head_bias = offset + CLASSES * last;
        Layout {
            gates,
            embedding_width,
            dense: false,
            layer_sizes: sizes.clone(),
            connections,
            head_weight,
            head_bias,
            total: head_bias + CLASSES,
        }
    }

    fn last_width(&self) -> usize {
        self.layer_sizes[self.layer_sizes.len() - 1]
    }
}

/// Flattens tensors into one `f32` vector, in order.
fn flatten(tensors: impl IntoIterator<Item = Tensor>) -> NnResult<Vec<f32>> {
    let mut values = Vec::new();
    for tensor in tensors {
        values.extend(Vec::<f32>::try_from(
            &tensor.f_detach()?.f_reshape([-1])?.f_to_kind(Kind::Float)?,
        )?);
    }
    Ok(values)
}

const STATE_PARAMS: &str = "params";
const STATE_EXP_AVG: &str = "exp_avg";
const STATE_EXP_AVG_SQ: &str = "exp_avg_sq";
const STATE_STEP: &str = "step";

/// A batch in the layout the kernels use: tokens time-major `[T × B]`.
pub struct NativeBatch {
    steps: usize,
    size: usize,
    tokens: Vec<usize>,
    lengths: Vec<usize>,
    labels: Vec<usize>,
}

impl NativeBatch {
    /// Pads with token 0 to the longest sequence, as `make_batch` does.
    pub fn new(examples: &[&Example]) -> NnResult<Self> {
        let size = examples.len();
        let steps = examples.iter().map(|e| e.codes.len()).max().unwrap_or(0);
        if size == 0 || steps == 0 || examples.iter().any(|e| e.codes.is_empty()) {
            return Err(NnError::InvalidData(
                "a batch needs at least one sequence and no empty ones".into(),
            ));
        }
        let mut tokens = vec![0usize; steps * size];
        for (column, example) in examples.iter().enumerate() {
            for (step, &code) in example.codes.iter().enumerate() {
                let code = usize::try_from(code)
                    .ok()
                    .filter(|&c| c < VOCAB)
                    .ok_or_else(|| {
                        NnError::InvalidData(format!(
                            "token code {code} is outside the embedding's 0..{VOCAB}"
                        ))
                    })?;
                tokens[step * size + column] = code;
            }
        }
        let labels = examples
            .iter()
            .map(|e| {
                usize::try_from(e.label)
                    .ok()
                    .filter(|&l| l < CLASSES)
                    .ok_or_else(|| NnError::InvalidData(format!("label {} is not 0 or 1", e.label)))
            })
            .collect::<NnResult<Vec<_>>>()?;
        Ok(NativeBatch {
            steps,
            size,
            tokens,
            lengths: examples.iter().map(|e| e.codes.len()).collect(),
            labels,
        })
    }

    /// The batches of one pass over `data` in the given order.
    pub fn all(data: &[Example], order: &[usize], batch_size: usize) -> NnResult<Vec<Self>> {
        order
            .chunks(batch_size.max(1))
            .map(|chunk| {
                let examples: Vec<&Example> = chunk.iter().map(|&i| &data[i]).collect();
                NativeBatch::new(&examples)
            })
            .collect()
    }
}

/// Per-connection activations of one forward pass, each `[T × F × B]`.
#[derive(Default)]
struct ConnectionState {
    /// Activated gates (RNN: unused; LSTM: i, f, g, o; GRU: r, z, n).
    gates: Vec<f32>,
    hidden: Vec<f32>,
    /// LSTM: cell state; GRU: W_hn·h + b_hn.
    aux: Vec<f32>,
}

/// Buffers reused from batch to batch.
#[derive(Default)]
struct Workspace {
    embedded: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    connections: Vec<ConnectionState>,
    d_embedded: Vec<f32>,
    d_outputs: Vec<Vec<f32>>,
    /// Pre-activation gradients `[T × G·H × B]` (GRU: of the input side).
    d_gates: Vec<f32>,
    /// GRU only: gradient of W_hn·h + b_hn, `[T × H × B]`.
    d_aux: Vec<f32>,
    d_hidden: Vec<f32>,
    d_hidden_next: Vec<f32>,
    d_cell_next: Vec<f32>,
    zeros: Vec<f32>,
    features: Vec<f32>,
    logits: Vec<f32>,
}

/// For buffers every element of which is written before it is read: no clearing.
fn resize_for_overwrite(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}

fn resize_zeroed(buffer: &mut Vec<f32>, len: usize) {
    buffer.clear();
    buffer.resize(len, 0.0);
}

/// y += a·x
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// out[i] += Σ_r weight(r) · sources[r·size + i] over r = 0..count, for every i in ascending r
/// (so exactly what `count` calls of [`axpy`] compute), but a block of lanes at a time held in
/// registers: one load and store of `out` per block instead of one per term. Zero weights are
/// skipped (masked inputs).
#[inline(always)]
fn accumulate(
    out: &mut [f32],
    count: usize,
    weight: impl Fn(usize) -> f32,
    sources: &[f32],
    size: usize,
) {
    const LANES: usize = 32;
    let full = out.len() / LANES * LANES;
    for (block, chunk) in out[..full].chunks_exact_mut(LANES).enumerate() {
        let start = block * LANES;
        let mut lanes = [0f32; LANES];
        lanes.copy_from_slice(chunk);
        for r in 0..count {
            let w = weight(r);
            if w == 0.0 {
                continue;
            }
            let source = &sources[r * size + start..r * size + start + LANES];
            for (lane, &x) in lanes.iter_mut().zip(source) {
                *lane += w * x;
            }
        }
        chunk.copy_from_slice(&lanes);
    }
    if full < out.len() {
        for r in 0..count {
            let w = weight(r);
            if w != 0.0 {
                axpy(
                    w,
                    &sources[r * size + full..r * size + out.len()],
                    &mut out[full..],
                );
            }
        }
    }
}

/// `out` (`rows × size`) += `weights` (`rows × count`, row-major) · `sources` (`count × size`):
/// [`accumulate`] for a dense matrix, four rows at a time so each source load serves four
/// rows. Per lane the terms are added in ascending r as there; zero weights are not skipped.
#[inline(always)]
fn accumulate_rows(out: &mut [f32], weights: &[f32], count: usize, sources: &[f32], size: usize) {
    const ROWS: usize = 4;
    const LANES: usize = 16;
    let rows = out.len() / size;
    let full = size / LANES * LANES;
    let blocks = rows / ROWS;
    for block in 0..blocks {
        let w = &weights[block * ROWS * count..(block + 1) * ROWS * count];
        let (w0, rest) = w.split_at(count);
        let (w1, rest) = rest.split_at(count);
        let (w2, w3) = rest.split_at(count);
        let o = &mut out[block * ROWS * size..(block + 1) * ROWS * size];
        for start in (0..full).step_by(LANES) {
            let mut lanes = [[0f32; LANES]; ROWS];
            for (i, row) in lanes.iter_mut().enumerate() {
                row.copy_from_slice(&o[i * size + start..i * size + start + LANES]);
            }
            let terms = w0.iter().zip(w1).zip(w2.iter().zip(w3));
            for (r, ((&v0, &v1), (&v2, &v3))) in terms.enumerate() {
                let at = r * size + start;
                let Ok(x) = <&[f32; LANES]>::try_from(&sources[at..at + LANES]) else {
                    continue;
                };
                for l in 0..LANES {
                    lanes[0][l] += v0 * x[l];
                    lanes[1][l] += v1 * x[l];
                    lanes[2][l] += v2 * x[l];
                    lanes[3][l] += v3 * x[l];
                }
            }
            for (i, row) in lanes.iter().enumerate() {
                o[i * size + start..i * size + start + LANES].copy_from_slice(row);
            }
        }
        if full < size {
            for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
                for (r, &weight) in w.iter().enumerate() {
                    axpy(
                        weight,
                        &sources[r * size + full..(r + 1) * size],
                        &mut o[i * size + full..(i + 1) * size],
                    );
                }
            }
        }
    }
    for j in blocks * ROWS..rows {
        let row = &weights[j * count..(j + 1) * count];
        accumulate(
            &mut out[j * size..(j + 1) * size],
            count,
            |r| row[r],
            sources,
            size,
        );
    }
}

/// `weights ∘ mask` (`rows × count`), transposed to `count × rows` when `transpose`.
fn masked_weights(
    weights: &[f32],
    mask: &[f32],
    rows: usize,
    count: usize,
    transpose: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; rows * count];
    for j in 0..rows {
        for k in 0..count {
            let value = weights[j * count + k] * mask[j * count + k];
            if transpose {
                out[k * rows + j] = value;
            } else {
                out[j * count + k] = value;
            }
        }
    }
    out
}

/// `grads[j·count + k] += Σ_t Σ_b d(t, j)[b] · x(t, k)[b]` for live (unmasked) weights, over the
/// time steps `steps`: a dense matrix's weight gradients, four inputs `k` at a time, each summed
/// in 32 lanes across all steps and reduced once.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weight_gradients<'a>(
    grads: &mut [f32],
    mask: &[f32],
    rows: usize,
    count: usize,
    steps: std::ops::Range<usize>,
    d: impl Fn(usize, usize) -> &'a [f32],
    x: impl Fn(usize, usize) -> &'a [f32],
) {
    const LANES: usize = 32;
    #[inline(always)]
    fn add_products(lanes: &mut [f32; LANES], tail: &mut f32, d: &[f32], x: &[f32]) {
        let (d_chunks, d_rest) = d.as_chunks::<LANES>();
        let (x_chunks, x_rest) = x.as_chunks::<LANES>();
        for (a, b) in d_chunks.iter().zip(x_chunks) {
            for l in 0..LANES {
                lanes[l] += a[l] * b[l];
            }
        }
        for (a, b) in d_rest.iter().zip(x_rest) {
            *tail += a * b;
        }
    }
    #[inline(always)]
    fn reduce(lanes: &[f32; LANES], tail: f32) -> f32 {
        let mut half = [0f32; 8];
        for (l, value) in lanes.iter().enumerate() {
            half[l % 8] += value;
        }
        ((half[0] + half[4]) + (half[1] + half[5]))
            + ((half[2] + half[6]) + (half[3] + half[7]))
            + tail
    }
    for j in 0..rows {
        let mut k = 0;
        while k < count {
            let ks = 4.min(count - k);
            let (mut l0, mut l1, mut l2, mut l3) =
                ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
            let mut tails = [0f32; 4];
            for t in steps.clone() {
                let d_row = d(t, j);
                add_products(&mut l0, &mut tails[0], d_row, x(t, k));
                if ks == 4 {
                    add_products(&mut l1, &mut tails[1], d_row, x(t, k + 1));
                    add_products(&mut l2, &mut tails[2], d_row, x(t, k + 2));
                    add_products(&mut l3, &mut tails[3], d_row, x(t, k + 3));
                }
            }
            let sums = [
                reduce(&l0, tails[0]),
                reduce(&l1, tails[1]),
                reduce(&l2, tails[2]),
                reduce(&l3, tails[3]),
            ];
            let done = if ks == 4 { 4 } else { 1 };
            for (i, total) in sums.iter().enumerate().take(done) {
                let index = j * count + k + i;
                if mask[index] != 0.0 {
                    grads[index] += total;
                }
            }
            k += done;
        }
    }
}

/// Σ x·y with eight partial sums, so the loop vectorises (and always sums in the same order).
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.len() / 8 * 8;
    for (xs, ys) in x[..chunks].chunks_exact(8).zip(y[..chunks].chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += xs[lane] * ys[lane];
        }
    }
    let mut tail = 0f32;
    for (a, b) in x[chunks..].iter().zip(&y[chunks..]) {
        tail += a * b;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.len() / 8 * 8;
    for xs in x[..chunks].chunks_exact(8) {
        for lane in 0..8 {
            lanes[lane] += xs[lane];
        }
    }
    let tail: f32 = x[chunks..].iter().sum();
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// e^x for f32 without a libm call (Cephes' polynomial after reducing by powers of two), written
/// with plain arithmetic and integer bit operations only, so loops over it vectorise; relative
/// error about 2e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer n with the 1.5·2²³ trick: afterwards the low bits of
    // `shifted` hold n, so 2ⁿ is built from them without a float-to-int conversion.
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    let power = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(SHIFTER.to_bits())
            .wrapping_add(127)
            << 23,
    );
    p * power
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    // 1 − 2/(e^{2x} + 1) saturates correctly at both ends; near 0 the error is absolute (~1e-7).
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[inline(always)]
fn sigmoid_in_place(values: &mut [f32]) {
    for v in values {
        *v = sigmoid(*v);
    }
}

#[inline(always)]
fn tanh_in_place(values: &mut [f32]) {
    for v in values {
        *v = tanh(*v);
    }
}

/// Loss and predictions of one batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchOutcome {
    /// Batch-mean cross-entropy.
    pub loss: f64,
    pub correct: usize,
}

/// One randomly structured network with its own parameters and Adam state, all flat `f32`.
pub struct NativeNetwork {
    variant: Variant,
    readout: Readout,
    layout: Layout,
    params: Vec<f32>,
    /// 1 where a parameter is live, 0 where the DAG masks an input weight.
    mask: Vec<f32>,
    grads: Vec<f32>,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    step: u64,
    workspace: Workspace,
}

impl NativeNetwork {
    /// Takes over a reference network's initial parameters (same values, same order).
    pub fn from_reference(network: &RandomNetwork, readout: Readout) -> NnResult<Self> {
        let structure = network.structure();
        let layout = Layout::new(structure, network.variant(), structure.layer_sizes[0]);
        let params = flatten(network.named_parameters().into_iter().map(|(_, t)| t))?;
        let mut mask = vec![1f32; layout.total];
        for (connection, placed) in structure.connections.iter().zip(&layout.connections) {
            if connection.source.is_none() {
                continue;
            }
            let rows = layout.gates * placed.hidden;
            let block = &mut mask[placed.weight_ih..placed.weight_ih + rows * placed.input];
            block.fill(0.0);
            for gate in 0..layout.gates {
                for &(row, column) in &connection.edges {
                    block[(gate * placed.hidden + row) * placed.input + column] = 1.0;
                }
            }
        }
        Self::with_parameters(network.variant(), readout, layout, params, mask)
    }

    /// The stacked model of the base and pruning experiments as a chain: layer 0 reads the
    /// embedding, layer l reads layer l−1, the last feeds the head. Takes over the model's
    /// values and masks (input-to-hidden and hidden-to-hidden), so a pruned model retrains
    /// with its masks fixed, as [`crate::nn::train_epoch`] does on libtorch.
    pub fn from_model(model: &RecurrentModel) -> NnResult<Self> {
        let config = model.config();
        if config.vocab_size != VOCAB as i64 || config.num_classes != CLASSES as i64 {
            return Err(NnError::InvalidConfig(format!(
                "the native kernels handle a vocabulary of {VOCAB} and {CLASSES} classes, the \
                 model has {} and {}; retrain it on libtorch (rnn.prune `strategy: sequential`)",
                config.vocab_size, config.num_classes
            )));
        }
        let (hidden, layers) = (config.hidden_size as usize, config.num_layers as usize);
        let structure = NetworkStructure {
            layer_sizes: vec![hidden; layers],
            connections: (0..layers)
                .map(|layer| Connection {
                    source: layer.checked_sub(1),
                    target: layer,
                    edges: Vec::new(),
                })
                .collect(),
        };
        let layout = Layout {
            dense: true,
            ..Layout::new(&structure, config.variant, config.embedding_dim as usize)
        };
        let params = flatten(model.named_parameters().into_iter().map(|(_, t)| t))?;
        let mut mask = vec![1f32; layout.total];
        for (layer, placed) in layout.connections.iter().enumerate() {
            let rows = layout.gates * placed.hidden;
            for (kind, offset, width) in [
                (WeightKind::InputToHidden, placed.weight_ih, placed.input),
                (WeightKind::HiddenToHidden, placed.weight_hh, placed.hidden),
            ] {
                let values = flatten([model.mask(layer, kind)?])?;
                mask[offset..offset + rows * width].copy_from_slice(&values);
            }
        }
        Self::with_parameters(config.variant, config.readout, layout, params, mask)
    }

    /// Checks that `params` fill `layout`; fresh gradients and Adam state.
    fn with_parameters(
        variant: Variant,
        readout: Readout,
        layout: Layout,
        params: Vec<f32>,
        mask: Vec<f32>,
    ) -> NnResult<Self> {
        let total = layout.total;
        if params.len() != total {
            return Err(NnError::InvalidConfig(format!(
                "the network has {} parameter values, the layout expects {total}",
                params.len()
            )));
        }
        Ok(NativeNetwork {
            variant,
            readout,
            layout,
            params,
            mask,
            grads: vec![0.0; total],
            exp_avg: vec![0.0; total],
            exp_avg_sq: vec![0.0; total],
            step: 0,
            workspace: Workspace::default(),
        })
    }

    /// Copies the parameters into `model` (the one this network was built from, or one of the
    /// same configuration), e.g. to save it in the model's own format.
    pub fn write_parameters_into(&self, model: &RecurrentModel) -> NnResult<()> {
        let _guard = tch::no_grad_guard();
        let mut offset = 0;
        for (name, mut tensor) in model.named_parameters() {
            let count = tensor.numel();
            let values = self.params.get(offset..offset + count).ok_or_else(|| {
                NnError::InvalidConfig(format!(
                    "`{name}` does not fit: the model is larger than this network"
                ))
            })?;
            tensor.f_copy_(&Tensor::f_from_slice(values)?.f_reshape(tensor.size())?)?;
            offset += count;
        }
        if offset != self.params.len() {
            return Err(NnError::InvalidConfig(format!(
                "the model has {offset} parameter values, this network {}",
                self.params.len()
            )));
        }
        Ok(())
    }

    /// Parameters and Adam state, for checkpoints.
    pub fn save_state(&self, path: &Path) -> NnResult<()> {
        let vector = |values: &[f32]| Tensor::f_from_slice(values);
        write_safetensors_atomic(
            path,
            &[
                (STATE_PARAMS.into(), vector(&self.params)?),
                (STATE_EXP_AVG.into(), vector(&self.exp_avg)?),
                (STATE_EXP_AVG_SQ.into(), vector(&self.exp_avg_sq)?),
                (
                    STATE_STEP.into(),
                    Tensor::f_from_slice(&[self.step as i64])?,
                ),
            ],
        )
    }

    /// Restores what [`NativeNetwork::save_state`] wrote for a network of the same layout.
    pub fn load_state(&mut self, path: &Path) -> NnResult<()> {
        let mut stored = read_safetensors_map(path)?;
        let total = [self.layout.total as i64];
        let mut take = |name: &str| -> NnResult<Vec<f32>> {
            Ok(Vec::<f32>::try_from(&take_checked(
                &mut stored,
                path,
                name,
                &total,
            )?)?)
        };
        let (params, exp_avg, exp_avg_sq) = (
            take(STATE_PARAMS)?,
            take(STATE_EXP_AVG)?,
            take(STATE_EXP_AVG_SQ)?,
        );
        let step = stored
            .remove(STATE_STEP)
            .ok_or_else(|| NnError::MissingTensor {
                path: path.to_path_buf(),
                name: STATE_STEP.into(),
                expected: "[1] (int64)".into(),
            })?
            .f_int64_value(&[0])?;
        reject_leftovers(stored, path)?;
        self.params = params;
        self.exp_avg = exp_avg;
        self.exp_avg_sq = exp_avg_sq;
        self.step = u64::try_from(step).map_err(|_| NnError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("negative step count {step}"),
        })?;
        Ok(())
    }

    /// Parameters in `RandomNetwork::named_parameters` order, flattened.
    pub fn parameters(&self) -> &[f32] {
        &self.params
    }

    /// Gradients of the last [`NativeNetwork::backward`] (masked entries are zero).
    pub fn gradients(&self) -> &[f32] {
        &self.grads
    }

    /// Logits `[2 × B]` (class-major) of a batch, keeping what backward needs.
    pub fn forward(&mut self, batch: &NativeBatch) -> &[f32] {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked on the line above).
            unsafe { self.forward_avx512(batch) };
            return &self.workspace.logits;
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked on the line above).
            unsafe { self.forward_avx2(batch) };
            return &self.workspace.logits;
        }
        self.forward_portable(batch);
        &self.workspace.logits
    }

    /// [`NativeNetwork::forward`] compiled for AVX2: the same operations in the same order, eight
    /// lanes at a time (no fused multiply-add, so results are bit-identical to the portable build).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn forward_avx2(&mut self, batch: &NativeBatch) {
        self.forward_portable(batch);
    }

    /// [`NativeNetwork::forward`] compiled for AVX-512 (sixteen lanes; see
    /// [`NativeNetwork::forward_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
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
    fn outcome(&self, batch: &NativeBatch) -> BatchOutcome {
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

    /// Gradients of the batch-mean cross-entropy of the last forward pass into `gradients()`.
    pub fn backward(&mut self, batch: &NativeBatch) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked on the line above).
            unsafe { self.backward_avx512(batch) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked on the line above).
            unsafe { self.backward_avx2(batch) };
            return;
        }
        self.backward_portable(batch);
    }

    /// [`NativeNetwork::backward`] compiled for AVX2 (see [`NativeNetwork::forward_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn backward_avx2(&mut self, batch: &NativeBatch) {
        self.backward_portable(batch);
    }

    /// [`NativeNetwork::backward`] compiled for AVX-512 (see [`NativeNetwork::forward_avx512`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
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
        let mut d_logits = vec![0f32; CLASSES * size];
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
        let mut d_features = vec![0f32; last * size];
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

    /// Scales the gradients to a total 2-norm of at most `max_norm` (`clip_grad_norm_`).
    fn clip(&mut self, max_norm: f64) {
        let total = self
            .grads
            .iter()
            .map(|&g| f64::from(g) * f64::from(g))
            .sum::<f64>()
            .sqrt() as f32;
        let coef = ((1.0 / (total + 1e-6)) * max_norm as f32).min(1.0);
        for g in &mut self.grads {
            *g *= coef;
        }
    }

    /// One Adam update, the formula of [`crate::nn::Adam::step`] element by element.
    fn adam_step(&mut self, config: &AdamConfig) {
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - config.beta2.powf(step)).sqrt() as f32;
        let step_size = (config.lr / bias_correction1) as f32;
        let (weight1, beta2, weight2, eps) = (
            (1.0 - config.beta1) as f32,
            config.beta2 as f32,
            (1.0 - config.beta2) as f32,
            config.eps as f32,
        );
        for (((p, &g), m), v) in self
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
        {
            *m += weight1 * (g - *m);
            *v = *v * beta2 + (weight2 * g) * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *p += (-step_size * *m) / denom;
        }
    }

    /// One training step: forward, backward, optional clipping, Adam.
    pub fn train_batch(
        &mut self,
        batch: &NativeBatch,
        clip_norm: Option<f64>,
        adam: &AdamConfig,
    ) -> BatchOutcome {
        self.forward(batch);
        let outcome = self.outcome(batch);
        self.backward(batch);
        if let Some(max_norm) = clip_norm {
            self.clip(max_norm);
        }
        self.adam_step(adam);
        outcome
    }

    /// Loss and accuracy of one batch without training.
    pub fn evaluate_batch(&mut self, batch: &NativeBatch) -> BatchOutcome {
        self.forward(batch);
        self.outcome(batch)
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
    let (dense_ih, dense_hh) = if dense {
        (
            masked_weights(weight_ih, mask_ih, rows, width, false),
            masked_weights(weight_hh, mask_hh, rows, hidden, false),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    for t in 0..steps {
        let (done, rest) = state.hidden.split_at_mut(t * block);
        let previous = (t > 0).then(|| &done[(t - 1) * block..]);
        let h = &mut rest[..block];
        let z = &mut state.gates[t * rows * size..(t + 1) * rows * size];
        let x = &input[t * width * size..(t + 1) * width * size];
        for j in 0..rows {
            let bias = if j < folded_rows {
                bias_ih[j] + bias_hh[j]
            } else {
                bias_ih[j]
            };
            z[j * size..(j + 1) * size].fill(bias);
        }
        if dense {
            accumulate_rows(z, &dense_ih, width, x, size);
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
                accumulate(row, width, |p| ih[p] * mask_row[p], x, size);
                if let Some(previous) = previous {
                    if j < folded_rows {
                        let hh = &weight_hh[j * hidden..(j + 1) * hidden];
                        let mask_row = &mask_hh[j * hidden..(j + 1) * hidden];
                        accumulate(row, hidden, |k| hh[k] * mask_row[k], previous, size);
                    }
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
                    row.fill(bias_hh[2 * hidden + u]);
                    if let (Some(previous), false) = (previous, dense) {
                        let span = (2 * hidden + u) * hidden..(2 * hidden + u + 1) * hidden;
                        let (hh, mask_row) = (&weight_hh[span.clone()], &mask_hh[span]);
                        accumulate(row, hidden, |k| hh[k] * mask_row[k], previous, size);
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
    let (dense_direct_t, dense_n_t) = if dense {
        let split = direct_rows * hidden;
        (
            masked_weights(
                &weight_hh[..split],
                &mask_hh[..split],
                direct_rows,
                hidden,
                true,
            ),
            masked_weights(
                &weight_hh[split..],
                &mask_hh[split..],
                rows - direct_rows,
                hidden,
                true,
            ),
        )
    } else {
        (Vec::new(), Vec::new())
    };
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
                    &dense_direct_t,
                    direct_rows,
                    d_recurrent,
                    size,
                );
                if variant == Variant::Gru {
                    accumulate_rows(
                        d_hidden_next,
                        &dense_n_t,
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
        if dense {
            // Weight gradients come from `weight_gradients` below.
            continue;
        }
        for k in 0..hidden {
            let index = c.weight_hh + j * hidden + k;
            if mask[index] == 0.0 {
                continue;
            }
            let mut total = 0f32;
            for t in 1..steps {
                let d_row = if gru && j >= 2 * hidden {
                    let u = j - 2 * hidden;
                    &d_aux[(t * hidden + u) * size..(t * hidden + u + 1) * size]
                } else {
                    &d_gates[(t * rows + j) * size..(t * rows + j + 1) * size]
                };
                let before =
                    &state.hidden[((t - 1) * hidden + k) * size..((t - 1) * hidden + k + 1) * size];
                total += dot(d_row, before);
            }
            grads[index] += total;
        }
        for p in 0..width {
            let index = c.weight_ih + j * width + p;
            if mask[index] == 0.0 {
                continue;
            }
            let mut total = 0f32;
            for t in 0..steps {
                let d_row = &d_gates[(t * rows + j) * size..(t * rows + j + 1) * size];
                let x = &input[(t * width + p) * size..(t * width + p + 1) * size];
                total += dot(d_row, x);
            }
            grads[index] += total;
        }
    }
    let weight_ih = &params[c.weight_ih..c.weight_ih + rows * width];
    let mask_ih = &mask[c.weight_ih..c.weight_ih + rows * width];
    if dense {
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
        // d x[t] += (W_ih ∘ M)ᵀ · d gates[t]
        let dense_ih_t = masked_weights(weight_ih, mask_ih, rows, width, true);
        for t in 0..steps {
            accumulate_rows(
                &mut d_input[t * width * size..(t + 1) * width * size],
                &dense_ih_t,
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

/// Per-network totals of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativePass {
    /// Sum of batch-mean losses.
    pub loss: f64,
    pub accuracy: f64,
}

impl NativeNetwork {
    /// One epoch over pre-built batches.
    pub fn train_epoch(
        &mut self,
        batches: &[NativeBatch],
        clip_norm: Option<f64>,
        adam: &AdamConfig,
    ) -> NativePass {
        self.pass(batches, |network, batch| {
            network.train_batch(batch, clip_norm, adam)
        })
    }

    /// Loss and accuracy over pre-built batches, parameters unchanged.
    pub fn evaluate(&mut self, batches: &[NativeBatch]) -> NativePass {
        self.pass(batches, NativeNetwork::evaluate_batch)
    }

    fn pass(
        &mut self,
        batches: &[NativeBatch],
        mut each: impl FnMut(&mut Self, &NativeBatch) -> BatchOutcome,
    ) -> NativePass {
        let mut loss = 0.0;
        let mut correct = 0usize;
        let mut seen = 0usize;
        for batch in batches {
            let outcome = each(self, batch);
            loss += outcome.loss;
            correct += outcome.correct;
            seen += batch.size;
        }
        NativePass {
            loss,
            accuracy: correct as f64 / seen.max(1) as f64,
        }
    }
}

/// How a group of networks trains: the thesis's settings by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingSettings {
    pub batch_size: usize,
    pub clip_norm: Option<f64>,
    pub adam: AdamConfig,
    /// Seed of every epoch's shuffle (all networks see the same batches).
    pub shuffle_seed: u64,
}

/// Trains every network one epoch (all on the batches of
/// [`epoch_order`]`(len, shuffle_seed, epoch)`) and evaluates it on `test`, networks in parallel
/// on the current rayon pool. Returns (train, test) per network. Each network's numbers depend
/// only on itself and the data, not on the group or the thread count.
pub fn train_and_evaluate_epoch(
    networks: &mut [NativeNetwork],
    train: &[Example],
    test: &[Example],
    settings: &TrainingSettings,
    epoch: u64,
) -> NnResult<Vec<(NativePass, NativePass)>> {
    if train.is_empty() || test.is_empty() || settings.batch_size == 0 {
        return Err(NnError::InvalidData(
            "training needs train and test examples and a batch size of at least 1".into(),
        ));
    }
    let order = epoch_order(train.len(), settings.shuffle_seed, epoch);
    let train_batches = NativeBatch::all(train, &order, settings.batch_size)?;
    let test_order: Vec<usize> = (0..test.len()).collect();
    let test_batches = NativeBatch::all(test, &test_order, settings.batch_size)?;
    Ok(networks
        .par_iter_mut()
        .map(|network| {
            let trained = network.train_epoch(&train_batches, settings.clip_norm, &settings.adam);
            let tested = network.evaluate(&test_batches);
            (trained, tested)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: u32) -> Vec<f32> {
        (0..count)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                x as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn blocked_accumulation_is_bit_identical_to_one_axpy_per_term() {
        // 128 and 62: full blocks, and a last batch with a remainder.
        for size in [128usize, 62, 7] {
            let count = 9;
            let sources = values(count * size, 1);
            let mut weights = values(count, 2);
            weights[3] = 0.0;
            let mut expected = values(size, 3);
            let mut blocked = expected.clone();
            for (r, &w) in weights.iter().enumerate() {
                axpy(w, &sources[r * size..(r + 1) * size], &mut expected);
            }
            accumulate(&mut blocked, count, |r| weights[r], &sources, size);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&blocked), bits(&expected), "size {size}");
        }
    }

    #[test]
    fn exp_sigmoid_and_tanh_match_libm() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let relative = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-30);
            assert!(relative(exp(x), x.exp()) < 1e-6, "exp({x})");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "sigmoid({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
        }
        // Clamped, not overflowing or underflowing to garbage.
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }
}
