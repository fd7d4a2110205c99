//! The native network: construction from a reference network or the stacked model,
//! parameters, and checkpoints of parameters and Adam state.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::nn::model::{Readout, RecurrentModel, WeightKind};
use crate::nn::random::{Connection, NetworkStructure, RandomNetwork};
use crate::nn::tensors::{
    read_safetensors_map, reject_leftovers, take_checked, write_safetensors_atomic,
};
use crate::nn::{NnError, NnResult, Variant};

use super::isa::Isa;
use super::layout::Layout;
use super::workspace::Workspace;
use super::{CLASSES, VOCAB};

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

/// One randomly structured network with its own parameters and Adam state, all flat `f32`.
pub struct NativeNetwork {
    pub(super) variant: Variant,
    pub(super) readout: Readout,
    pub(super) layout: Layout,
    pub(super) params: Vec<f32>,
    /// 1 where a parameter is live, 0 where the DAG masks an input weight.
    pub(super) mask: Vec<f32>,
    pub(super) grads: Vec<f32>,
    pub(super) exp_avg: Vec<f32>,
    pub(super) exp_avg_sq: Vec<f32>,
    pub(super) step: u64,
    pub(super) workspace: Workspace,
    /// The build of the kernels this network runs on (all give the same bits).
    pub(super) isa: Isa,
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
            isa: Isa::best(),
        })
    }

    /// Runs this network's kernels on `isa` from now on (the cross-ISA tests and benchmarks;
    /// every path gives the same bits); refused where this CPU cannot run it.
    pub fn set_isa(&mut self, isa: Isa) -> NnResult<()> {
        if !isa.is_supported() {
            return Err(NnError::InvalidConfig(format!(
                "this CPU cannot run the {isa} kernels; it runs {}",
                Isa::supported()
                    .iter()
                    .map(|isa| isa.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.isa = isa;
        Ok(())
    }

    /// Whether the recurrent matrices are multiplied as dense matrices (masked weights as
    /// zeros, four rows at a time) or term by term with masked weights skipped. Both give the
    /// same bits: a skipped term is a zero product, and adding one changes no sum, since every
    /// sum starts from a bias or +0 and so is never −0.
    pub fn set_dense(&mut self, dense: bool) {
        self.layout.dense = dense;
    }

    /// The build of the kernels this network runs on.
    pub fn isa(&self) -> Isa {
        self.isa
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
}
