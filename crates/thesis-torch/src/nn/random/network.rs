//! [`RandomNetwork`]: one randomly structured network on libtorch, one recurrence per
//! connection, the reference the batched and native versions are checked against.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::nn::batch::Batch;
use crate::nn::cell::{run_layer, LayerWeights, Variant};
use crate::nn::model::Readout;
use crate::nn::{NnError, NnResult};

use super::structure::NetworkStructure;
use super::{CLASS_COUNT, VOCAB_SIZE};

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

pub(super) fn leaf(values: &[f32], shape: &[i64]) -> NnResult<Tensor> {
    Ok(Tensor::f_from_slice(values)?
        .f_reshape(shape)?
        .f_set_requires_grad(true)?)
}

pub(super) fn constant(values: &[f32], shape: &[i64]) -> NnResult<Tensor> {
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
    pub(super) variant: Variant,
    pub(super) readout: Readout,
    pub(super) structure: NetworkStructure,
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
pub(super) fn read_out(readout: Readout, outputs: &Tensor, lengths: &Tensor) -> NnResult<Tensor> {
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
