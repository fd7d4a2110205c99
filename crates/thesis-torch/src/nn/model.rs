//! The thesis's base model: Embedding(128, E) → L masked recurrent layers of H → Linear(H, 2),
//! with PyTorch's tensor names, seeded initialisation and safetensors save/load.
//!
//! Parameters are plain leaf tensors owned here (not a `VarStore`), so the optimizer state and
//! checkpoints can name them exactly as a PyTorch `state_dict` would: `embedding.weight`,
//! `rnn.weight_ih_l{k}`, …, `head.bias`, with the masks beside them as `mask.rnn.weight_ih_l{k}`.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::batch::Batch;
use super::cell::{run_stack, CellEngine, LayerWeights, Variant};
use super::tensors::{
    read_safetensors_map, reject_leftovers, take_checked, write_safetensors_atomic,
};
use super::{NnError, NnResult};

pub use pipe_thesis::model::config::{default_num_classes, default_vocab_size};
pub use pipe_thesis::model::{
    mask_name, param_name, EmbeddingInit, ModelConfig, Readout, WeightKind,
};

/// One recurrent layer's parameters and masks.
#[derive(Debug)]
struct RecurrentLayer {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    mask_ih: Tensor,
    mask_hh: Tensor,
}

/// Embedding → masked recurrent stack → linear head.
#[derive(Debug)]
pub struct RecurrentModel {
    config: ModelConfig,
    embedding: Tensor,
    layers: Vec<RecurrentLayer>,
    head_weight: Tensor,
    head_bias: Tensor,
}

/// Draws initial parameter values from ChaCha8 seeded with the model seed. A Rust-side stream
/// (rather than `tch::manual_seed` + `uniform_`) keeps initialisation independent of libtorch's
/// process-global generator, so models built concurrently on several threads (parallel stages,
/// parallel tests) still get their seed's exact bytes, on any libtorch version or device.
struct ParameterSampler {
    rng: ChaCha8Rng,
}

impl ParameterSampler {
    fn new(seed: u64) -> Self {
        ParameterSampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn leaf(values: Vec<f32>, shape: &[i64]) -> NnResult<Tensor> {
        Ok(Tensor::f_from_slice(&values)?
            .f_reshape(shape)?
            .f_set_requires_grad(true)?)
    }

    /// A trainable f32 leaf tensor drawn from U(−bound, bound), filled in row-major order.
    fn uniform(&mut self, shape: &[i64], bound: f64) -> NnResult<Tensor> {
        let count: i64 = shape.iter().product();
        let values = (0..count)
            .map(|_| ((2.0 * self.unit() - 1.0) * bound) as f32)
            .collect();
        Self::leaf(values, shape)
    }

    /// A trainable f32 leaf tensor drawn from N(0, 1) (Box–Muller, one value per pair).
    fn standard_normal(&mut self, shape: &[i64]) -> NnResult<Tensor> {
        let count: i64 = shape.iter().product();
        let values = (0..count)
            .map(|_| {
                let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
                let angle = 2.0 * std::f64::consts::PI * self.unit();
                (radius * angle.cos()) as f32
            })
            .collect();
        Self::leaf(values, shape)
    }
}

impl RecurrentModel {
    /// A freshly initialised model. Values come from ChaCha8 seeded with `seed`, drawn in a
    /// fixed order: embedding, each layer's `weight_ih, weight_hh, bias_ih, bias_hh`, then the
    /// head's weight and bias. Masks are all ones.
    pub fn new(config: ModelConfig, seed: u64) -> NnResult<Self> {
        config.validate().map_err(NnError::InvalidConfig)?;
        let mut sampler = ParameterSampler::new(seed);
        let bound = 1.0 / (config.hidden_size as f64).sqrt();
        let embedding_shape = [config.vocab_size, config.embedding_dim];
        let embedding = match config.embedding_init {
            EmbeddingInit::Normal => sampler.standard_normal(&embedding_shape)?,
            EmbeddingInit::Uniform => sampler.uniform(&embedding_shape, bound)?,
        };
        let gates = config.variant.gate_count() * config.hidden_size;
        let mut layers = Vec::with_capacity(config.num_layers as usize);
        for layer in 0..config.num_layers {
            let input = config.layer_input_size(layer);
            let weight_ih = sampler.uniform(&[gates, input], bound)?;
            let weight_hh = sampler.uniform(&[gates, config.hidden_size], bound)?;
            let bias_ih = sampler.uniform(&[gates], bound)?;
            let bias_hh = sampler.uniform(&[gates], bound)?;
            layers.push(RecurrentLayer {
                mask_ih: Tensor::f_ones([gates, input], (Kind::Float, tch::Device::Cpu))?,
                mask_hh: Tensor::f_ones(
                    [gates, config.hidden_size],
                    (Kind::Float, tch::Device::Cpu),
                )?,
                weight_ih,
                weight_hh,
                bias_ih,
                bias_hh,
            });
        }
        let head_weight = sampler.uniform(&[config.num_classes, config.hidden_size], bound)?;
        let head_bias = sampler.uniform(&[config.num_classes], bound)?;
        Ok(RecurrentModel {
            config,
            embedding,
            layers,
            head_weight,
            head_bias,
        })
    }

    /// Reads a model saved by [`RecurrentModel::save`] (or a PyTorch `state_dict` with the
    /// same names plus masks). Draws no random numbers.
    /// Every parameter and mask must be finite: a NaN or an infinity is an error naming the
    /// tensor, not a model that predicts one class.
    pub fn load(config: ModelConfig, path: &Path) -> NnResult<Self> {
        config.validate().map_err(NnError::InvalidConfig)?;
        let mut model = Self::zeros(config)?;
        model.load_values(path)?;
        model.check_finite(path)?;
        Ok(model)
    }

    /// Fails on the first tensor (parameters in initialisation order, then masks) holding a NaN
    /// or an infinity; `path` names where the values came from.
    pub fn check_finite(&self, path: &Path) -> NnResult<()> {
        let mut named = self.named_parameters();
        named.extend(self.named_masks());
        for (name, tensor) in named {
            let count = tensor
                .f_isfinite()?
                .f_logical_not()?
                .f_sum(Kind::Int64)?
                .f_int64_value(&[])?;
            if count > 0 {
                return Err(NnError::NonFinite {
                    path: path.to_path_buf(),
                    name,
                    count,
                    total: tensor.numel() as i64,
                });
            }
        }
        Ok(())
    }

    fn zeros(config: ModelConfig) -> NnResult<Self> {
        let zero_parameter = |shape: &[i64]| -> NnResult<Tensor> {
            Ok(Tensor::f_zeros(shape, (Kind::Float, tch::Device::Cpu))?
                .f_set_requires_grad(true)?)
        };
        let gates = config.variant.gate_count() * config.hidden_size;
        let mut layers = Vec::with_capacity(config.num_layers as usize);
        for layer in 0..config.num_layers {
            let input = config.layer_input_size(layer);
            layers.push(RecurrentLayer {
                weight_ih: zero_parameter(&[gates, input])?,
                weight_hh: zero_parameter(&[gates, config.hidden_size])?,
                bias_ih: zero_parameter(&[gates])?,
                bias_hh: zero_parameter(&[gates])?,
                mask_ih: Tensor::f_ones([gates, input], (Kind::Float, tch::Device::Cpu))?,
                mask_hh: Tensor::f_ones(
                    [gates, config.hidden_size],
                    (Kind::Float, tch::Device::Cpu),
                )?,
            });
        }
        Ok(RecurrentModel {
            embedding: zero_parameter(&[config.vocab_size, config.embedding_dim])?,
            head_weight: zero_parameter(&[config.num_classes, config.hidden_size])?,
            head_bias: zero_parameter(&[config.num_classes])?,
            layers,
            config,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Where the model computes.
    pub fn device(&self) -> tch::Device {
        self.embedding.device()
    }

    /// The model on `device`: parameters as trainable leaves there, masks beside them (itself
    /// when it is there already). Create the optimizer after moving.
    pub fn into_device(self, device: tch::Device) -> NnResult<Self> {
        if self.device() == device {
            return Ok(self);
        }
        let leaf = |t: &Tensor| super::device::leaf_on(t, device);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(RecurrentLayer {
                    weight_ih: leaf(&l.weight_ih)?,
                    weight_hh: leaf(&l.weight_hh)?,
                    bias_ih: leaf(&l.bias_ih)?,
                    bias_hh: leaf(&l.bias_hh)?,
                    mask_ih: super::device::on(&l.mask_ih, device)?,
                    mask_hh: super::device::on(&l.mask_hh, device)?,
                })
            })
            .collect::<NnResult<Vec<_>>>()?;
        Ok(RecurrentModel {
            embedding: leaf(&self.embedding)?,
            head_weight: leaf(&self.head_weight)?,
            head_bias: leaf(&self.head_bias)?,
            layers,
            config: self.config,
        })
    }

    /// Trainable parameters (shallow clones sharing storage), in initialisation order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named = vec![(
            "embedding.weight".to_string(),
            self.embedding.shallow_clone(),
        )];
        for (layer, params) in self.layers.iter().enumerate() {
            let layer = layer as i64;
            named.push((
                param_name("weight_ih", layer),
                params.weight_ih.shallow_clone(),
            ));
            named.push((
                param_name("weight_hh", layer),
                params.weight_hh.shallow_clone(),
            ));
            named.push((param_name("bias_ih", layer), params.bias_ih.shallow_clone()));
            named.push((param_name("bias_hh", layer), params.bias_hh.shallow_clone()));
        }
        named.push(("head.weight".to_string(), self.head_weight.shallow_clone()));
        named.push(("head.bias".to_string(), self.head_bias.shallow_clone()));
        named
    }

    /// Masks (shallow clones), named `mask.rnn.weight_{ih,hh}_l{k}`.
    pub fn named_masks(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::with_capacity(2 * self.layers.len());
        for (layer, params) in self.layers.iter().enumerate() {
            let layer = layer as i64;
            named.push((
                mask_name(WeightKind::InputToHidden, layer),
                params.mask_ih.shallow_clone(),
            ));
            named.push((
                mask_name(WeightKind::HiddenToHidden, layer),
                params.mask_hh.shallow_clone(),
            ));
        }
        named
    }

    fn layer(&self, layer: usize) -> NnResult<&RecurrentLayer> {
        self.layers.get(layer).ok_or_else(|| {
            NnError::UnknownName(format!(
                "recurrent layer {layer} (the model has {})",
                self.layers.len()
            ))
        })
    }

    /// The stored weight matrix (a shallow clone; masked entries are zero after
    /// [`RecurrentModel::apply_masks`]).
    pub fn weight(&self, layer: usize, kind: WeightKind) -> NnResult<Tensor> {
        let params = self.layer(layer)?;
        Ok(match kind {
            WeightKind::InputToHidden => params.weight_ih.shallow_clone(),
            WeightKind::HiddenToHidden => params.weight_hh.shallow_clone(),
        })
    }

    /// The mask of a weight matrix (a shallow clone).
    pub fn mask(&self, layer: usize, kind: WeightKind) -> NnResult<Tensor> {
        let params = self.layer(layer)?;
        Ok(match kind {
            WeightKind::InputToHidden => params.mask_ih.shallow_clone(),
            WeightKind::HiddenToHidden => params.mask_hh.shallow_clone(),
        })
    }

    /// Replaces a mask (any numeric 0/1 tensor of the weight's shape) and zeroes the weight
    /// entries it removes.
    pub fn set_mask(&mut self, layer: usize, kind: WeightKind, mask: &Tensor) -> NnResult<()> {
        let name = mask_name(kind, layer as i64);
        let mut target = self.mask(layer, kind)?;
        if mask.size() != target.size() {
            return Err(NnError::MaskShape {
                name,
                found: mask.size(),
                expected: target.size(),
            });
        }
        target.f_copy_(&mask.f_to_kind(Kind::Float)?)?;
        self.apply_masks()
    }

    /// `W ← W ∘ M` for every masked matrix, outside autograd. Called after each optimizer step
    /// so stored weights stay exactly zero where masked.
    pub fn apply_masks(&mut self) -> NnResult<()> {
        let _guard = tch::no_grad_guard();
        for params in &mut self.layers {
            let _ = params.weight_ih.f_mul_(&params.mask_ih)?;
            let _ = params.weight_hh.f_mul_(&params.mask_hh)?;
        }
        Ok(())
    }

    /// The per-layer effective weights `W ∘ M` (in the autograd graph).
    pub fn masked_layer_weights(&self) -> NnResult<Vec<LayerWeights>> {
        self.layers
            .iter()
            .map(|p| {
                Ok(LayerWeights::masked(
                    &p.weight_ih,
                    &p.mask_ih,
                    &p.weight_hh,
                    &p.mask_hh,
                    &p.bias_ih,
                    &p.bias_hh,
                )?)
            })
            .collect()
    }

    /// Logits `[B, classes]` of a batch.
    pub fn forward(&self, batch: &Batch) -> NnResult<Tensor> {
        self.forward_tokens(&batch.tokens, &batch.lengths)
    }

    /// Logits from time-major token ids `[T, B]` (right-padded with 0) and true lengths `[B]`.
    pub fn forward_tokens(&self, tokens: &Tensor, lengths: &Tensor) -> NnResult<Tensor> {
        let (steps, batch) = tokens.size2()?;
        if steps == 0 {
            return Err(NnError::InvalidData(
                "a batch must have at least one time step".into(),
            ));
        }
        let embedded = Tensor::f_embedding(&self.embedding, tokens, -1, false, false)?;
        let layers = self.masked_layer_weights()?;
        let outputs = run_stack(self.config.variant, self.config.engine, &embedded, &layers)?;
        let features = match self.config.readout {
            Readout::LastPadded => outputs.f_select(0, steps - 1)?,
            Readout::TrueLength => {
                // Row (len − 1)·B + b of the flattened [T·B, H] outputs is sequence b's last step.
                let flat = outputs.f_reshape([steps * batch, self.config.hidden_size])?;
                let columns = Tensor::f_arange(batch, (Kind::Int64, tokens.device()))?;
                let rows = lengths
                    .f_sub_scalar(1)?
                    .f_mul_scalar(batch)?
                    .f_add(&columns)?;
                flat.f_index_select(0, &rows)?
            }
        };
        Ok(features.f_linear(&self.head_weight, Some(&self.head_bias))?)
    }

    /// Writes parameters and masks as safetensors (sorted by name; same values → same bytes),
    /// through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> NnResult<()> {
        let mut named = self.named_parameters();
        named.extend(self.named_masks());
        write_safetensors_atomic(path, &named)
    }

    /// Copies the values of a saved model into this model's tensors (in place, so optimizer
    /// state that refers to them stays valid). Every tensor must be present with the right
    /// shape and dtype f32, and no other tensor may be in the file.
    pub fn load_values(&mut self, path: &Path) -> NnResult<()> {
        self.load_map(read_safetensors_map(path)?, path)
    }

    /// A model from named tensors already in memory (a converted PyTorch file); the same checks
    /// as [`RecurrentModel::load`], `origin` naming where the values came from.
    pub fn from_tensors(
        config: ModelConfig,
        stored: BTreeMap<String, Tensor>,
        origin: &Path,
    ) -> NnResult<Self> {
        config.validate().map_err(NnError::InvalidConfig)?;
        let mut model = Self::zeros(config)?;
        model.load_map(stored, origin)?;
        model.check_finite(origin)?;
        Ok(model)
    }

    fn load_map(&mut self, mut stored: BTreeMap<String, Tensor>, path: &Path) -> NnResult<()> {
        let mut targets = self.named_parameters();
        targets.extend(self.named_masks());
        let _guard = tch::no_grad_guard();
        for (name, mut target) in targets {
            // Weights trained elsewhere (a PyTorch state_dict) carry no masks: keep all-ones.
            if name.starts_with("mask.") && !stored.contains_key(&name) {
                continue;
            }
            let value = take_checked(&mut stored, path, &name, &target.size())?;
            target.f_copy_(&value)?;
        }
        reject_leftovers(stored, path)
    }
}

/// The configuration a weight file implies for `variant`: embedding width, hidden size and layer
/// count are read from the tensor shapes (`embedding.weight`, `rnn.weight_hh_l{k}`).
pub fn infer_config(variant: Variant, readout: Readout, path: &Path) -> NnResult<ModelConfig> {
    let stored = read_safetensors_map(path)?;
    let shape = |name: &str, expected: String| -> NnResult<Vec<i64>> {
        stored
            .get(name)
            .map(|t| t.size())
            .ok_or_else(|| NnError::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected,
            })
    };
    let gates = variant.gate_count();
    let embedding = shape(
        "embedding.weight",
        format!("[{}, E] (E the embedding width)", default_vocab_size()),
    )?;
    let hh = shape(
        "rnn.weight_hh_l0",
        if gates == 1 {
            "[H, H] (H the hidden size)".to_string()
        } else {
            format!("[{gates}·H, H] (H the hidden size) for {}", variant.name())
        },
    )?;
    let (vocab_size, embedding_dim) = match embedding.as_slice() {
        [v, e] => (*v, *e),
        _ => {
            return Err(NnError::WrongShape {
                path: path.to_path_buf(),
                name: "embedding.weight".into(),
                found: embedding,
                expected: vec![128, -1],
            })
        }
    };
    let hidden_size = hh.get(1).copied().unwrap_or(0);
    if hh.len() != 2 || hh[0] != variant.gate_count() * hidden_size {
        return Err(NnError::WrongShape {
            path: path.to_path_buf(),
            name: "rnn.weight_hh_l0".into(),
            found: hh,
            expected: vec![variant.gate_count() * hidden_size, hidden_size],
        });
    }
    let num_layers = (0..)
        .take_while(|k| stored.contains_key(&format!("rnn.weight_hh_l{k}")))
        .count() as i64;
    let num_classes = shape(
        "head.weight",
        format!("[{}, {hidden_size}]", default_num_classes()),
    )?
    .first()
    .copied()
    .unwrap_or(2);
    let config = ModelConfig {
        variant,
        vocab_size,
        embedding_dim,
        hidden_size,
        num_layers,
        num_classes,
        readout,
        engine: CellEngine::fastest_on_cpu(variant),
        embedding_init: EmbeddingInit::default(),
    };
    config.validate().map_err(NnError::InvalidConfig)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(tensor: &Tensor) -> Vec<f32> {
        Vec::try_from(tensor.reshape([-1])).unwrap()
    }

    #[test]
    fn initialisation_respects_bounds_and_is_pinned() {
        let model = RecurrentModel::new(ModelConfig::thesis(Variant::Gru), 0).unwrap();
        let bound = 1.0 / 50f32.sqrt();
        for (name, tensor) in model.named_parameters().into_iter().skip(1) {
            let v = values(&tensor);
            assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
        }
        let embedding = values(&model.named_parameters()[0].1);
        let mean = embedding.iter().sum::<f32>() / embedding.len() as f32;
        let variance =
            embedding.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / embedding.len() as f32;
        assert!(
            mean.abs() < 0.05 && (variance - 1.0).abs() < 0.05,
            "{mean} {variance}"
        );
        // Golden values: a change here changes every trained model's bytes.
        let first_weight = values(&model.named_parameters()[1].1);
        assert_eq!(embedding[..3], [-1.5355413, 1.4404618, -1.9569163]);
        assert_eq!(first_weight[..3], [-0.11401004, -0.03669028, 0.05748754]);
    }

    #[test]
    fn set_mask_checks_shape_and_zeroes_weights() {
        let mut model = RecurrentModel::new(ModelConfig::thesis(Variant::Lstm), 1).unwrap();
        let error = model
            .set_mask(
                0,
                WeightKind::InputToHidden,
                &Tensor::ones([3, 3], tch::kind::FLOAT_CPU),
            )
            .unwrap_err();
        assert!(matches!(&error, NnError::MaskShape { name, expected, .. }
            if name == "mask.rnn.weight_ih_l0" && expected == &vec![200, 50]));
        let mask = Tensor::zeros([200, 50], tch::kind::FLOAT_CPU);
        model
            .set_mask(2, WeightKind::HiddenToHidden, &mask)
            .unwrap();
        let weight = model.weight(2, WeightKind::HiddenToHidden).unwrap();
        assert!(values(&weight).iter().all(|&x| x == 0.0));
        assert!(model.weight(3, WeightKind::HiddenToHidden).is_err());
    }
}
