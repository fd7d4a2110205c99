//! Randomly structured recurrent networks (thesis experiment 3, SPEC §4), one at a time and
//! batched many at once.
//!
//! The architecture follows the thesis code: layer 0 holds the DAG's sources and is a dense
//! recurrent layer fed by Embedding(128, |layer 0|); each layer l ≥ 1 is a recurrent layer from
//! layer l−1 to layer l whose input-to-hidden weights are masked to the DAG's edges (the mask is
//! applied to every gate block, unlike the original's misaligned `np.repeat`) with a dense
//! hidden-to-hidden matrix; every pair of layers (j, l > j+1) joined by at least one DAG edge gets
//! a separate masked recurrent layer j → l (one per layer pair, as the original's
//! `layer_connected` loop builds them) whose output sequence is added to layer l's; the sum is
//! what later layers read; only the last layer feeds Linear(|last|, 2).
//!
//! [`RandomNetwork`] is that architecture written out literally (one recurrence per connection),
//! the reference. [`NetworkGroup`] computes the same mathematics for many networks at once:
//! all recurrences that end in the same layer run as one block-diagonal recurrence (a slot axis,
//! so each block keeps its own weights and state), and networks are stacked on a leading network
//! axis, padded to common widths and layer counts. Padded weights, biases and masks are zero, so
//! padded units stay exactly zero, read nothing, feed nothing and get exactly zero gradients;
//! Adam (elementwise) then leaves them at zero. Each network has its own loss (the group's loss
//! is the sum of the per-network batch means, so gradients do not mix) and its own
//! gradient-norm clipping.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Reduction, Tensor};

use super::adam::Adam;
use super::batch::{make_batch, Batch, Example};
use super::cell::{projection_bias, run_layer, run_projected, LayerWeights, Variant};
use super::model::Readout;
use super::train::epoch_order;
use super::{NnError, NnResult};
use crate::graph::{Dag, Graph};

/// Token codes the embedding accepts (ASCII).
pub const VOCAB_SIZE: i64 = 128;
/// Output classes (invalid, valid).
pub const CLASS_COUNT: i64 = 2;

/// One recurrent layer of the architecture: from a source (the embedding for layer 0, else a
/// layer's output) to a target layer's units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The layer read, or `None` for the embedding (layer 0's main connection).
    pub source: Option<usize>,
    /// The layer whose units this recurrence computes.
    pub target: usize,
    /// Edges as (target unit, source unit) positions within their layers; ignored (dense) when
    /// `source` is `None`.
    pub edges: Vec<(usize, usize)>,
}

impl Connection {
    /// Whether this is a skip connection (it jumps over at least one layer).
    pub fn is_skip(&self) -> bool {
        self.source.is_some_and(|source| self.target > source + 1)
    }
}

/// The layer sizes and connections a DAG defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStructure {
    /// Units per layer (|layer l|).
    pub layer_sizes: Vec<usize>,
    /// Main connections for layers 0..L in order, then skip connections sorted by (target, source).
    pub connections: Vec<Connection>,
}

impl NetworkStructure {
    /// Builds the structure of `graph` (oriented low → high label, longest-path layers).
    pub fn from_graph(graph: &Graph) -> NnResult<Self> {
        let dag = Dag::from_graph(graph).map_err(|e| NnError::InvalidConfig(e.to_string()))?;
        Self::from_dag(&dag)
    }

    /// Builds the structure of an already layered DAG.
    pub fn from_dag(dag: &Dag) -> NnResult<Self> {
        let layers = dag.layers();
        if layers.is_empty() {
            return Err(NnError::InvalidConfig(
                "a random network needs a graph with at least one node".into(),
            ));
        }
        let node_layers = dag.node_layers();
        // Position of each node within its layer (layers list their nodes ascending).
        let mut position = vec![0usize; node_layers.len()];
        for nodes in layers {
            for (index, &node) in nodes.iter().enumerate() {
                position[node] = index;
            }
        }
        let mut connections: Vec<Connection> = (0..layers.len())
            .map(|target| Connection {
                source: target.checked_sub(1),
                target,
                edges: Vec::new(),
            })
            .collect();
        let mut skips: std::collections::BTreeMap<(usize, usize), Vec<(usize, usize)>> =
            std::collections::BTreeMap::new();
        for &(u, v) in dag.edges() {
            let (from, to) = (node_layers[u], node_layers[v]);
            let edge = (position[v], position[u]);
            if to == from + 1 {
                connections[to].edges.push(edge);
            } else {
                skips.entry((to, from)).or_default().push(edge);
            }
        }
        for ((target, source), edges) in skips {
            connections.push(Connection {
                source: Some(source),
                target,
                edges,
            });
        }
        Ok(NetworkStructure {
            layer_sizes: layers.iter().map(Vec::len).collect(),
            connections,
        })
    }

    /// Number of layers.
    pub fn layer_count(&self) -> usize {
        self.layer_sizes.len()
    }

    /// Width of the input a connection reads.
    fn input_width(&self, connection: &Connection) -> usize {
        match connection.source {
            Some(layer) => self.layer_sizes[layer],
            None => self.layer_sizes[0],
        }
    }

    /// The `[G·|target|, |input|]` input mask of a connection: the edge mask repeated on every
    /// gate block (row g·H + r is unit r of gate g), all ones for the embedding's dense input.
    fn input_mask(&self, connection: &Connection, gates: usize) -> Vec<f32> {
        let rows = self.layer_sizes[connection.target];
        let columns = self.input_width(connection);
        let mut block = vec![0f32; rows * columns];
        if connection.source.is_none() {
            block.fill(1.0);
        } else {
            for &(row, column) in &connection.edges {
                block[row * columns + column] = 1.0;
            }
        }
        block.repeat(gates)
    }

    /// Last layer index.
    fn last_layer(&self) -> usize {
        self.layer_sizes.len() - 1
    }
}

/// Draws initial values from ChaCha8 (as `RecurrentModel` does, not libtorch's global generator,
/// so concurrent construction cannot change them).
struct ValueSampler {
    rng: ChaCha8Rng,
}

impl ValueSampler {
    fn new(seed: u64) -> Self {
        ValueSampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn uniform(&mut self, count: usize, bound: f64) -> Vec<f32> {
        (0..count)
            .map(|_| ((2.0 * self.unit() - 1.0) * bound) as f32)
            .collect()
    }

    fn standard_normal(&mut self, count: usize) -> Vec<f32> {
        (0..count)
            .map(|_| {
                let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
                let angle = 2.0 * std::f64::consts::PI * self.unit();
                (radius * angle.cos()) as f32
            })
            .collect()
    }
}

fn leaf(values: &[f32], shape: &[i64]) -> NnResult<Tensor> {
    Ok(Tensor::f_from_slice(values)?
        .f_reshape(shape)?
        .f_set_requires_grad(true)?)
}

fn constant(values: &[f32], shape: &[i64]) -> NnResult<Tensor> {
    Ok(Tensor::f_from_slice(values)?.f_reshape(shape)?)
}

/// One connection's parameters (reference layout, PyTorch shapes).
#[derive(Debug)]
struct ConnectionParameters {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    mask_ih: Tensor,
}

/// One randomly structured network, computed literally: one recurrence per connection.
#[derive(Debug)]
pub struct RandomNetwork {
    variant: Variant,
    readout: Readout,
    structure: NetworkStructure,
    embedding: Tensor,
    connections: Vec<ConnectionParameters>,
    head_weight: Tensor,
    head_bias: Tensor,
}

impl RandomNetwork {
    /// A freshly initialised network. Values come from ChaCha8 seeded with `seed`, in the order
    /// PyTorch registers the original's modules: embedding N(0, 1); each connection's
    /// `weight_ih, weight_hh, bias_ih, bias_hh` U(±1/√|target|) (main layers, then skips); the
    /// head U(±1/√|last|) (PyTorch's `Linear` default bound for that fan-in).
    pub fn new(
        structure: NetworkStructure,
        variant: Variant,
        readout: Readout,
        seed: u64,
    ) -> NnResult<Self> {
        if structure.layer_sizes.is_empty() || structure.layer_sizes.contains(&0) {
            return Err(NnError::InvalidConfig(format!(
                "layer sizes must be positive, got {:?}",
                structure.layer_sizes
            )));
        }
        let gates = variant.gate_count() as usize;
        let mut sampler = ValueSampler::new(seed);
        let first = structure.layer_sizes[0];
        let embedding = leaf(
            &sampler.standard_normal(VOCAB_SIZE as usize * first),
            &[VOCAB_SIZE, first as i64],
        )?;
        let mut connections = Vec::with_capacity(structure.connections.len());
        for connection in &structure.connections {
            let hidden = structure.layer_sizes[connection.target];
            let input = structure.input_width(connection);
            let bound = 1.0 / (hidden as f64).sqrt();
            let rows = (gates * hidden) as i64;
            let weight_ih = leaf(
                &sampler.uniform(gates * hidden * input, bound),
                &[rows, input as i64],
            )?;
            let weight_hh = leaf(
                &sampler.uniform(gates * hidden * hidden, bound),
                &[rows, hidden as i64],
            )?;
            let bias_ih = leaf(&sampler.uniform(gates * hidden, bound), &[rows])?;
            let bias_hh = leaf(&sampler.uniform(gates * hidden, bound), &[rows])?;
            let mask_ih = constant(
                &structure.input_mask(connection, gates),
                &[rows, input as i64],
            )?;
            connections.push(ConnectionParameters {
                weight_ih,
                weight_hh,
                bias_ih,
                bias_hh,
                mask_ih,
            });
        }
        let last = structure.layer_sizes[structure.last_layer()];
        let bound = 1.0 / (last as f64).sqrt();
        let head_weight = leaf(
            &sampler.uniform(CLASS_COUNT as usize * last, bound),
            &[CLASS_COUNT, last as i64],
        )?;
        let head_bias = leaf(
            &sampler.uniform(CLASS_COUNT as usize, bound),
            &[CLASS_COUNT],
        )?;
        Ok(RandomNetwork {
            variant,
            readout,
            structure,
            embedding,
            connections,
            head_weight,
            head_bias,
        })
    }

    pub fn structure(&self) -> &NetworkStructure {
        &self.structure
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Trainable parameters (shallow clones) in initialisation order, named
    /// `embedding`, `l{target}_from_{source}.{weight_ih,…}` (`from_embedding` for layer 0),
    /// `head.weight`, `head.bias`.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named = vec![("embedding".to_string(), self.embedding.shallow_clone())];
        for (connection, params) in self.structure.connections.iter().zip(&self.connections) {
            let stem = match connection.source {
                Some(source) => format!("l{}_from_{source}", connection.target),
                None => format!("l{}_from_embedding", connection.target),
            };
            for (name, tensor) in [
                ("weight_ih", &params.weight_ih),
                ("weight_hh", &params.weight_hh),
                ("bias_ih", &params.bias_ih),
                ("bias_hh", &params.bias_hh),
            ] {
                named.push((format!("{stem}.{name}"), tensor.shallow_clone()));
            }
        }
        named.push(("head.weight".to_string(), self.head_weight.shallow_clone()));
        named.push(("head.bias".to_string(), self.head_bias.shallow_clone()));
        named
    }

    /// Logits `[B, 2]` of a batch.
    pub fn forward(&self, batch: &Batch) -> NnResult<Tensor> {
        let steps = batch.tokens.size()[0];
        let batch_size = batch.tokens.size()[1];
        let embedded = self
            .embedding
            .f_index_select(0, &batch.tokens.f_reshape([-1])?)?
            .f_reshape([steps, batch_size, -1])?;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.structure.layer_count());
        for layer in 0..self.structure.layer_count() {
            let mut sum: Option<Tensor> = None;
            // Main connection first, then the skips into this layer by source: the original's
            // order of additions.
            for (connection, params) in self.structure.connections.iter().zip(&self.connections) {
                if connection.target != layer {
                    continue;
                }
                let input = match connection.source {
                    Some(source) => &outputs[source],
                    None => &embedded,
                };
                let weights = LayerWeights {
                    weight_ih: params.weight_ih.f_mul(&params.mask_ih)?,
                    weight_hh: params.weight_hh.shallow_clone(),
                    bias_ih: params.bias_ih.shallow_clone(),
                    bias_hh: params.bias_hh.shallow_clone(),
                };
                let output = run_layer(self.variant, input, &weights)?;
                sum = Some(match sum {
                    Some(previous) => previous.f_add(&output)?,
                    None => output,
                });
            }
            outputs.push(sum.ok_or_else(|| {
                NnError::InvalidConfig(format!("layer {layer} has no connection"))
            })?);
        }
        let last = outputs
            .last()
            .ok_or_else(|| NnError::InvalidConfig("a network needs a layer".into()))?;
        let features = read_out(self.readout, last, &batch.lengths)?;
        Ok(features.f_linear(&self.head_weight, Some(&self.head_bias))?)
    }
}

/// The classifier's input from a time-major output `[T, …, B, H]`: the last padded step, or each
/// sequence's own last step (`lengths` `[B]`). Returns `[…, B, H]`.
fn read_out(readout: Readout, outputs: &Tensor, lengths: &Tensor) -> NnResult<Tensor> {
    let shape = outputs.size();
    match readout {
        Readout::LastPadded => Ok(outputs.f_select(0, shape[0] - 1)?),
        Readout::TrueLength => {
            let rank = shape.len();
            let mut index_shape = vec![1i64; rank];
            index_shape[rank - 2] = shape[rank - 2];
            let mut expanded = shape.clone();
            expanded[0] = 1;
            let index = lengths
                .f_sub_scalar(1)?
                .f_reshape(&index_shape)?
                .f_expand(&expanded, false)?;
            Ok(outputs.f_gather(0, &index, false)?.f_squeeze_dim(0)?)
        }
    }
}

/// A dense row-major buffer with a shape, for assembling padded group tensors.
struct Buffer {
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Buffer {
    fn zeros(shape: &[usize]) -> Self {
        Buffer {
            shape: shape.to_vec(),
            values: vec![0.0; shape.iter().product()],
        }
    }

    fn offset(&self, index: &[usize]) -> usize {
        index
            .iter()
            .zip(&self.shape)
            .fold(0, |acc, (&i, &extent)| acc * extent + i)
    }

    fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }
}

/// Where one reference parameter's elements live in the group's parameter list.
#[derive(Debug, Clone)]
struct Placement {
    /// Index into the group's parameter list.
    parameter: usize,
    /// Flat offset in that group tensor of each reference element, row-major.
    offsets: Vec<i64>,
    /// The reference tensor's shape.
    shape: Vec<i64>,
}

/// The recurrent slots of one target layer in a group. Each network numbers its connections into
/// the layer 0 (main), 1, 2, … (skips by ascending source), so the slot count is the largest
/// per-network count, not the number of distinct sources in the group; a slot then reads
/// different layers in different networks, which the input pairs express.
#[derive(Debug)]
struct GroupLayer {
    slot_count: usize,
    /// Per input pair: (slot, layer read or `None` for the embedding), each with a weight
    /// `[N, G·W, W_source]` that is zero (masked) for networks whose slot reads another layer.
    inputs: Vec<(usize, Option<usize>)>,
    weight_ih: Vec<Tensor>,
    mask_ih: Vec<Tensor>,
    /// `[N, S, G·W, W]`
    weight_hh: Tensor,
    mask_hh: Tensor,
    /// `[N, S, 1, G·W]`
    bias_ih: Tensor,
    bias_hh: Tensor,
    bias_mask: Tensor,
}

/// Many randomly structured networks of one variant computed as one tensor program.
#[derive(Debug)]
pub struct NetworkGroup {
    variant: Variant,
    readout: Readout,
    count: usize,
    widths: Vec<usize>,
    head_width: usize,
    /// `[N, 128, W_0]`
    embedding: Tensor,
    layers: Vec<GroupLayer>,
    /// `[N, 2, W_head]` and its mask; bias `[N, 1, 2]`.
    head_weight: Tensor,
    head_mask: Tensor,
    head_bias: Tensor,
    /// For each layer that is some network's last: the layer and a `[N, 1, 1]` 0/1 selector.
    readout_layers: Vec<(usize, Tensor)>,
    /// Per network, per reference parameter (in `named_parameters` order).
    placements: Vec<Vec<Placement>>,
}

impl NetworkGroup {
    /// Stacks networks (all of the same variant and readout) into one padded group with the same
    /// parameter values.
    pub fn from_networks(networks: &[RandomNetwork]) -> NnResult<Self> {
        let first = networks
            .first()
            .ok_or_else(|| NnError::InvalidConfig("a group needs at least one network".into()))?;
        let (variant, readout) = (first.variant, first.readout);
        if networks
            .iter()
            .any(|n| n.variant != variant || n.readout != readout)
        {
            return Err(NnError::InvalidConfig(
                "all networks of a group need the same variant and readout".into(),
            ));
        }
        let count = networks.len();
        let gates = variant.gate_count() as usize;
        let layer_count = networks
            .iter()
            .map(|n| n.structure.layer_count())
            .max()
            .unwrap_or(0);
        let mut widths = vec![1usize; layer_count];
        for network in networks {
            for (layer, &size) in network.structure.layer_sizes.iter().enumerate() {
                widths[layer] = widths[layer].max(size);
            }
        }
        let head_width = networks
            .iter()
            .map(|n| n.structure.layer_sizes[n.structure.last_layer()])
            .max()
            .unwrap_or(1);
        // Per network, the slot of each connection: its rank among the connections into its
        // target layer (main first, then skips by source, the order of `connections`).
        let member_slots: Vec<Vec<usize>> = networks
            .iter()
            .map(|network| {
                let mut next = vec![0usize; layer_count];
                network
                    .structure
                    .connections
                    .iter()
                    .map(|c| {
                        next[c.target] += 1;
                        next[c.target] - 1
                    })
                    .collect()
            })
            .collect();
        let mut slot_counts = vec![1usize; layer_count];
        let mut inputs: Vec<Vec<(usize, Option<usize>)>> = vec![Vec::new(); layer_count];
        for (network, slots) in networks.iter().zip(&member_slots) {
            for (connection, &slot) in network.structure.connections.iter().zip(slots) {
                let layer = connection.target;
                slot_counts[layer] = slot_counts[layer].max(slot + 1);
                if !inputs[layer].contains(&(slot, connection.source)) {
                    inputs[layer].push((slot, connection.source));
                }
            }
        }
        for pairs in &mut inputs {
            pairs.sort();
        }

        // The group's parameter list: embedding, per layer (ih per slot, hh, bias_ih, bias_hh),
        // head weight, head bias. Buffers for values and masks in the same order.
        let mut values: Vec<Buffer> = Vec::new();
        let mut masks: Vec<Option<Buffer>> = Vec::new();
        values.push(Buffer::zeros(&[count, VOCAB_SIZE as usize, widths[0]]));
        masks.push(None);
        let mut layer_parameters = Vec::with_capacity(layer_count);
        for (layer, pairs) in inputs.iter().enumerate() {
            let rows = gates * widths[layer];
            let ih_start = values.len();
            for (_, source) in pairs {
                let input = source.map_or(widths[0], |s| widths[s]);
                values.push(Buffer::zeros(&[count, rows, input]));
                masks.push(Some(Buffer::zeros(&[count, rows, input])));
            }
            let hh = values.len();
            let slot_count = slot_counts[layer];
            values.push(Buffer::zeros(&[count, slot_count, rows, widths[layer]]));
            masks.push(Some(Buffer::zeros(&[
                count,
                slot_count,
                rows,
                widths[layer],
            ])));
            values.push(Buffer::zeros(&[count, slot_count, 1, rows]));
            masks.push(Some(Buffer::zeros(&[count, slot_count, 1, rows])));
            values.push(Buffer::zeros(&[count, slot_count, 1, rows]));
            masks.push(None);
            layer_parameters.push((ih_start, hh));
        }
        let head = values.len();
        values.push(Buffer::zeros(&[count, CLASS_COUNT as usize, head_width]));
        masks.push(Some(Buffer::zeros(&[
            count,
            CLASS_COUNT as usize,
            head_width,
        ])));
        values.push(Buffer::zeros(&[count, 1, CLASS_COUNT as usize]));
        masks.push(None);

        let mut placements = Vec::with_capacity(count);
        for (member, network) in networks.iter().enumerate() {
            let mut member_placements = Vec::new();
            let reference = network.named_parameters();
            let mut reference_values = reference.iter().map(|(_, t)| tensor_values(t));
            let mut next_values = || -> NnResult<Vec<f32>> {
                reference_values.next().unwrap_or_else(|| {
                    Err(NnError::InvalidConfig("parameter list mismatch".into()))
                })
            };
            let structure = &network.structure;
            // Embedding [128, s0] → [n, v, k].
            let first_width = structure.layer_sizes[0];
            let mut offsets = Vec::new();
            for token in 0..VOCAB_SIZE as usize {
                for unit in 0..first_width {
                    offsets.push(values[0].offset(&[member, token, unit]) as i64);
                }
            }
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                0,
                offsets,
                vec![VOCAB_SIZE, first_width as i64],
                &next_values()?,
                None,
            );
            for (connection, &slot) in structure.connections.iter().zip(&member_slots[member]) {
                let layer = connection.target;
                let (ih_start, hh) = layer_parameters[layer];
                let pair = inputs[layer]
                    .iter()
                    .position(|p| *p == (slot, connection.source))
                    .ok_or_else(|| NnError::InvalidConfig("connection without a slot".into()))?;
                let hidden = structure.layer_sizes[layer];
                let input = structure.input_width(connection);
                let width = widths[layer];
                let row = |gate: usize, unit: usize| gate * width + unit;
                let ih = ih_start + pair;
                let mut ih_offsets = Vec::new();
                let mut hh_offsets = Vec::new();
                let mut bias_offsets = Vec::new();
                let mut bias_hh_offsets = Vec::new();
                for gate in 0..gates {
                    for unit in 0..hidden {
                        for column in 0..input {
                            ih_offsets
                                .push(values[ih].offset(&[member, row(gate, unit), column]) as i64);
                        }
                        for column in 0..hidden {
                            hh_offsets.push(values[hh].offset(&[
                                member,
                                slot,
                                row(gate, unit),
                                column,
                            ]) as i64);
                        }
                        bias_offsets
                            .push(values[hh + 1].offset(&[member, slot, 0, row(gate, unit)]) as i64);
                        bias_hh_offsets.push(values[hh + 2].offset(&[
                            member,
                            slot,
                            0,
                            row(gate, unit),
                        ]) as i64);
                    }
                }
                let rows = (gates * hidden) as i64;
                let input_mask = structure.input_mask(connection, gates);
                let hh_ones = vec![1f32; hh_offsets.len()];
                let bias_ones = vec![1f32; bias_offsets.len()];
                let weight_ih = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    ih,
                    ih_offsets,
                    vec![rows, input as i64],
                    &weight_ih,
                    Some(&input_mask),
                );
                let weight_hh = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh,
                    hh_offsets,
                    vec![rows, hidden as i64],
                    &weight_hh,
                    Some(&hh_ones),
                );
                let bias_ih = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh + 1,
                    bias_offsets,
                    vec![rows],
                    &bias_ih,
                    Some(&bias_ones),
                );
                let bias_hh = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh + 2,
                    bias_hh_offsets,
                    vec![rows],
                    &bias_hh,
                    None,
                );
            }
            let last = structure.layer_sizes[structure.last_layer()];
            let mut head_offsets = Vec::new();
            for class in 0..CLASS_COUNT as usize {
                for unit in 0..last {
                    head_offsets.push(values[head].offset(&[member, class, unit]) as i64);
                }
            }
            let head_ones = vec![1f32; head_offsets.len()];
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                head,
                head_offsets,
                vec![CLASS_COUNT, last as i64],
                &next_values()?,
                Some(&head_ones),
            );
            let bias_offsets = (0..CLASS_COUNT as usize)
                .map(|class| values[head + 1].offset(&[member, 0, class]) as i64)
                .collect();
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                head + 1,
                bias_offsets,
                vec![CLASS_COUNT],
                &next_values()?,
                None,
            );
            placements.push(member_placements);
        }

        let to_leaf = |buffer: &Buffer| leaf(&buffer.values, &buffer.shape_i64());
        let to_mask = |buffer: &Option<Buffer>| -> NnResult<Tensor> {
            match buffer {
                Some(b) => constant(&b.values, &b.shape_i64()),
                None => Err(NnError::InvalidConfig("missing mask buffer".into())),
            }
        };
        let embedding = to_leaf(&values[0])?;
        let mut layers = Vec::with_capacity(layer_count);
        for (layer, pairs) in inputs.into_iter().enumerate() {
            let (ih_start, hh) = layer_parameters[layer];
            let mut weight_ih = Vec::with_capacity(pairs.len());
            let mut mask_ih = Vec::with_capacity(pairs.len());
            for index in 0..pairs.len() {
                weight_ih.push(to_leaf(&values[ih_start + index])?);
                mask_ih.push(to_mask(&masks[ih_start + index])?);
            }
            layers.push(GroupLayer {
                slot_count: slot_counts[layer],
                inputs: pairs,
                weight_ih,
                mask_ih,
                weight_hh: to_leaf(&values[hh])?,
                mask_hh: to_mask(&masks[hh])?,
                bias_ih: to_leaf(&values[hh + 1])?,
                bias_hh: to_leaf(&values[hh + 2])?,
                bias_mask: to_mask(&masks[hh + 1])?,
            });
        }
        let mut readout_layers = Vec::new();
        for layer in 0..layer_count {
            let selector: Vec<f32> = networks
                .iter()
                .map(|n| f32::from(u8::from(n.structure.last_layer() == layer)))
                .collect();
            if selector.iter().any(|&s| s > 0.0) {
                readout_layers.push((layer, constant(&selector, &[count as i64, 1, 1])?));
            }
        }
        Ok(NetworkGroup {
            variant,
            readout,
            count,
            widths,
            head_width,
            embedding,
            layers,
            head_weight: to_leaf(&values[head])?,
            head_mask: to_mask(&masks[head])?,
            head_bias: to_leaf(&values[head + 1])?,
            readout_layers,
            placements,
        })
    }

    /// Number of networks.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the group is empty (never: construction needs a network).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Padded width of each layer position.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Recurrent slots (blocks of the fused recurrences) of each layer position.
    pub fn slot_counts(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.slot_count).collect()
    }

    /// The group's parameters in a fixed order (shallow clones), named for the optimizer.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named = vec![("embedding".to_string(), self.embedding.shallow_clone())];
        for (index, layer) in self.layers.iter().enumerate() {
            for (pair, weight) in layer.weight_ih.iter().enumerate() {
                named.push((
                    format!("l{index}.input{pair}.weight_ih"),
                    weight.shallow_clone(),
                ));
            }
            named.push((
                format!("l{index}.weight_hh"),
                layer.weight_hh.shallow_clone(),
            ));
            named.push((format!("l{index}.bias_ih"), layer.bias_ih.shallow_clone()));
            named.push((format!("l{index}.bias_hh"), layer.bias_hh.shallow_clone()));
        }
        named.push(("head.weight".to_string(), self.head_weight.shallow_clone()));
        named.push(("head.bias".to_string(), self.head_bias.shallow_clone()));
        named
    }

    /// Member `member`'s view of group-layout tensors (parameters, gradients, …, in
    /// [`NetworkGroup::named_parameters`] order), in the reference layout of
    /// [`RandomNetwork::named_parameters`].
    pub fn member_tensors(&self, member: usize, group_tensors: &[Tensor]) -> NnResult<Vec<Tensor>> {
        let placements = self.placements.get(member).ok_or_else(|| {
            NnError::InvalidConfig(format!("no member {member} in a group of {}", self.count))
        })?;
        placements
            .iter()
            .map(|placement| {
                let source = group_tensors.get(placement.parameter).ok_or_else(|| {
                    NnError::InvalidConfig("group tensor list is too short".into())
                })?;
                let offsets = Tensor::f_from_slice(&placement.offsets)?;
                Ok(source
                    .f_reshape([-1])?
                    .f_index_select(0, &offsets)?
                    .f_reshape(&placement.shape)?)
            })
            .collect()
    }

    /// Logits `[N, B, 2]` of one batch for every network.
    pub fn forward(&self, batch: &Batch) -> NnResult<Tensor> {
        let steps = batch.tokens.size()[0];
        let batch_size = batch.tokens.size()[1];
        let count = self.count as i64;
        // [N, T·B, W0] → [T, N, B, W0]
        let embedded = self
            .embedding
            .f_index_select(1, &batch.tokens.f_reshape([-1])?)?
            .f_reshape([count, steps, batch_size, -1])?
            .f_permute([1, 0, 2, 3])?;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let mut projections: Vec<Option<Tensor>> =
                (0..layer.slot_count).map(|_| None).collect();
            for (((slot, source), weight), mask) in layer
                .inputs
                .iter()
                .zip(&layer.weight_ih)
                .zip(&layer.mask_ih)
            {
                let input = match source {
                    Some(s) => &outputs[*s],
                    None => &embedded,
                };
                // [T, N, B, in] · [N, in, G·W] → [T, N, B, G·W]; a network whose slot reads
                // another layer has zero weights here, so the sum below adds exact zeros.
                let weight_t = weight.f_mul(mask)?.f_transpose(-1, -2)?;
                let projection = input.f_matmul(&weight_t)?;
                let entry = &mut projections[*slot];
                *entry = Some(match entry.take() {
                    Some(previous) => previous.f_add(&projection)?,
                    None => projection,
                });
            }
            let projections = projections
                .into_iter()
                .map(|p| p.ok_or_else(|| NnError::InvalidConfig("a slot without input".into())))
                .collect::<NnResult<Vec<Tensor>>>()?;
            let bias_ih = layer.bias_ih.f_mul(&layer.bias_mask)?;
            let bias_hh = layer.bias_hh.f_mul(&layer.bias_mask)?;
            // [T, N, S, B, G·W] + [N, S, 1, G·W]
            let projected = Tensor::f_stack(&projections, 2)?.f_add(&projection_bias(
                self.variant,
                &bias_ih,
                &bias_hh,
            )?)?;
            let weight_hh = layer.weight_hh.f_mul(&layer.mask_hh)?;
            let hidden = run_projected(self.variant, &projected, &weight_hh, &bias_hh)?;
            // The block-diagonal recurrence's blocks add up to the layer's output.
            let output = if layer.slot_count == 1 {
                hidden.f_squeeze_dim(2)?
            } else {
                hidden.f_sum_dim_intlist(&[2i64][..], false, None::<Kind>)?
            };
            outputs.push(output);
        }
        let mut features: Option<Tensor> = None;
        let whole_group = self.readout_layers.len() == 1;
        for (layer, selector) in &self.readout_layers {
            let mut read = read_out(self.readout, &outputs[*layer], &batch.lengths)?;
            if !whole_group {
                // Zero the networks that end elsewhere (exact: x·1 = x, x·0 = 0, 0 + x = x).
                read = read.f_mul(selector)?;
            }
            let missing = (self.head_width - self.widths[*layer]) as i64;
            if missing > 0 {
                read = read.f_constant_pad_nd([0, missing])?;
            } else if missing < 0 {
                read = read.f_narrow(-1, 0, self.head_width as i64)?;
            }
            features = Some(match features {
                Some(previous) => previous.f_add(&read)?,
                None => read,
            });
        }
        let features =
            features.ok_or_else(|| NnError::InvalidConfig("a group without layers".into()))?;
        let head = self.head_weight.f_mul(&self.head_mask)?;
        Ok(features
            .f_matmul(&head.f_transpose(-1, -2)?)?
            .f_add(&self.head_bias)?)
    }
}

/// Writes a reference tensor's values (and optionally its mask) into group buffers at the given
/// flat offsets, and records the placement.
#[allow(clippy::too_many_arguments)]
fn place(
    values: &mut [Buffer],
    masks: &mut [Option<Buffer>],
    placements: &mut Vec<Placement>,
    parameter: usize,
    offsets: Vec<i64>,
    shape: Vec<i64>,
    reference: &[f32],
    mask: Option<&[f32]>,
) {
    for (index, &offset) in offsets.iter().enumerate() {
        values[parameter].values[offset as usize] = reference[index];
        if let (Some(mask), Some(buffer)) = (mask, masks[parameter].as_mut()) {
            buffer.values[offset as usize] = mask[index];
        }
    }
    placements.push(Placement {
        parameter,
        offsets,
        shape,
    });
}

fn tensor_values(tensor: &Tensor) -> NnResult<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        &tensor.f_detach()?.f_reshape([-1])?.f_to_kind(Kind::Float)?,
    )?)
}

/// Per-network batch-mean cross-entropy `[N]` of logits `[N, B, C]` against shared labels `[B]`.
pub fn per_network_cross_entropy(logits: &Tensor, labels: &Tensor) -> NnResult<Tensor> {
    let size = logits.size();
    let (count, batch) = (size[0], size[1]);
    let flat = logits.f_reshape([count * batch, -1])?;
    let targets = labels.f_repeat([count])?;
    Ok(flat
        .f_cross_entropy_loss::<Tensor>(&targets, None, Reduction::None, -100, 0.0)?
        .f_reshape([count, batch])?
        .f_mean_dim(&[1i64][..], false, None::<Kind>)?)
}

/// Clips each network's gradients to a total 2-norm of at most `max_norm`, as
/// `clip_grad_norm_` would on that network alone (coef = max_norm / (norm + 1e-6), clamped to 1).
/// `gradients` are group-layout tensors with the network axis first. Returns the norms.
pub fn clip_grad_norm_per_network(
    gradients: &[Tensor],
    count: usize,
    max_norm: f64,
) -> NnResult<Vec<f64>> {
    let _guard = tch::no_grad_guard();
    let defined: Vec<&Tensor> = gradients.iter().filter(|g| g.defined()).collect();
    if defined.is_empty() {
        return Ok(vec![0.0; count]);
    }
    let mut squares: Option<Tensor> = None;
    for gradient in &defined {
        let per_network = gradient
            .f_reshape([count as i64, -1])?
            .f_square()?
            .f_sum_dim_intlist(&[1i64][..], false, None::<Kind>)?;
        squares = Some(match squares {
            Some(total) => total.f_add(&per_network)?,
            None => per_network,
        });
    }
    let norms = squares
        .ok_or_else(|| NnError::InvalidData("no gradients".into()))?
        .f_sqrt()?;
    let coef = norms
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max_norm)?
        .f_clamp_max(1.0)?;
    for gradient in defined {
        let mut shape = vec![1i64; gradient.dim()];
        shape[0] = count as i64;
        let mut gradient = gradient.shallow_clone();
        let _ = gradient.f_mul_(&coef.f_reshape(&shape)?)?;
    }
    Ok(Vec::<f64>::try_from(&norms.f_to_kind(Kind::Double)?)?)
}

/// Per-network totals of one pass over a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupPass {
    /// Sum over batches of each network's batch-mean loss.
    pub losses: Vec<f64>,
    /// Fraction of sequences each network classified correctly.
    pub accuracies: Vec<f64>,
}

fn accumulate(
    logits: &Tensor,
    labels: &Tensor,
    losses: &Tensor,
    loss_sums: &mut [f64],
    correct: &mut [i64],
) -> NnResult<()> {
    let batch_losses = Vec::<f64>::try_from(&losses.f_detach()?.f_to_kind(Kind::Double)?)?;
    let hits = Vec::<i64>::try_from(
        &logits
            .f_detach()?
            .f_argmax(-1, false)?
            .f_eq_tensor(&labels.f_unsqueeze(0)?)?
            .f_sum_dim_intlist(&[1i64][..], false, Kind::Int64)?,
    )?;
    for (sum, value) in loss_sums.iter_mut().zip(batch_losses) {
        *sum += value;
    }
    for (total, value) in correct.iter_mut().zip(hits) {
        *total += value;
    }
    Ok(())
}

/// One training epoch for every network of the group, all on the same batches in the order of
/// [`epoch_order`]`(len, shuffle_seed, epoch)`: forward, per-network losses summed, backward,
/// per-network clipping, one (elementwise, hence per-network) Adam step.
pub fn train_group_epoch(
    group: &NetworkGroup,
    adam: &mut Adam,
    data: &[Example],
    batch_size: usize,
    clip_norm: Option<f64>,
    shuffle_seed: u64,
    epoch: u64,
) -> NnResult<GroupPass> {
    if data.is_empty() || batch_size == 0 {
        return Err(NnError::InvalidData(
            "training needs examples and a batch size of at least 1".into(),
        ));
    }
    let order = epoch_order(data.len(), shuffle_seed, epoch);
    let mut loss_sums = vec![0.0; group.len()];
    let mut correct = vec![0i64; group.len()];
    for chunk in order.chunks(batch_size) {
        let examples: Vec<&Example> = chunk.iter().map(|&i| &data[i]).collect();
        let batch = make_batch(&examples)?;
        adam.zero_grad();
        let logits = group.forward(&batch)?;
        let losses = per_network_cross_entropy(&logits, &batch.labels)?;
        // Network k's parameters only reach loss k, so the sum's gradient is each network's own.
        losses.f_sum(Kind::Float)?.f_backward()?;
        if let Some(max_norm) = clip_norm {
            clip_grad_norm_per_network(&adam.gradients(), group.len(), max_norm)?;
        }
        adam.step()?;
        accumulate(
            &logits,
            &batch.labels,
            &losses,
            &mut loss_sums,
            &mut correct,
        )?;
    }
    Ok(GroupPass {
        losses: loss_sums,
        accuracies: correct
            .iter()
            .map(|&c| c as f64 / data.len() as f64)
            .collect(),
    })
}

/// Evaluates every network of the group without gradients, batches in data order.
pub fn evaluate_group(
    group: &NetworkGroup,
    data: &[Example],
    batch_size: usize,
) -> NnResult<GroupPass> {
    if data.is_empty() || batch_size == 0 {
        return Err(NnError::InvalidData(
            "evaluation needs examples and a batch size of at least 1".into(),
        ));
    }
    let _guard = tch::no_grad_guard();
    let mut loss_sums = vec![0.0; group.len()];
    let mut correct = vec![0i64; group.len()];
    for chunk in data.chunks(batch_size) {
        let examples: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&examples)?;
        let logits = group.forward(&batch)?;
        let losses = per_network_cross_entropy(&logits, &batch.labels)?;
        accumulate(
            &logits,
            &batch.labels,
            &losses,
            &mut loss_sums,
            &mut correct,
        )?;
    }
    Ok(GroupPass {
        losses: loss_sums,
        accuracies: correct
            .iter()
            .map(|&c| c as f64 / data.len() as f64)
            .collect(),
    })
}

/// A network's initialisation seed, derived from the run's seed and the graph's id (SplitMix64
/// finaliser, so neighbouring ids get unrelated streams).
pub fn network_seed(run_seed: u64, graph_id: usize) -> u64 {
    let mut z = run_seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((graph_id as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Indices of `structures` cut into groups of at most `group_size`, after ordering by (layer
/// count, node count, position) so that a group's members have similar shapes and padding
/// stays small.
pub fn plan_groups(structures: &[NetworkStructure], group_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..structures.len()).collect();
    order.sort_by_key(|&i| {
        let s = &structures[i];
        (s.layer_count(), s.layer_sizes.iter().sum::<usize>(), i)
    });
    order
        .chunks(group_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphFamily;

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        Graph::new(0, GraphFamily::BarabasiAlbert, n, edges.iter().copied()).unwrap()
    }

    #[test]
    fn structure_follows_layers_and_groups_skips_by_layer_pair() {
        // 0→1→2→3 plus 0→3 and 1→3: layers {0},{1},{2},{3}; skips (0→3) and (1→3).
        let s = NetworkStructure::from_graph(&graph(4, &[(0, 1), (1, 2), (2, 3), (0, 3), (1, 3)]))
            .unwrap();
        assert_eq!(s.layer_sizes, vec![1, 1, 1, 1]);
        assert_eq!(s.connections.len(), 6);
        let skips: Vec<_> = s
            .connections
            .iter()
            .filter(|c| c.is_skip())
            .map(|c| (c.source, c.target))
            .collect();
        assert_eq!(skips, vec![(Some(0), 3), (Some(1), 3)]);
    }

    #[test]
    fn gate_blocks_all_carry_the_edge_mask() {
        let s = NetworkStructure::from_graph(&graph(4, &[(0, 2), (1, 3), (0, 3)])).unwrap();
        // Layers {0,1} → {2,3}: edges 2←0, 3←0, 3←1.
        let mask = s.input_mask(&s.connections[1], 3);
        let block = [1.0, 0.0, 1.0, 1.0];
        assert_eq!(mask, [block, block, block].concat());
    }
}
