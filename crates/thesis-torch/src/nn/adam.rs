//! Adam written out by hand (PyTorch's single-tensor CPU formula, no weight decay) so that its
//! state — step count, `exp_avg`, `exp_avg_sq` per parameter — can be checkpointed and restored
//! bit-identically; `tch`'s built-in optimizer state cannot be saved.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::tensors::{
    read_safetensors_map, reject_leftovers, take_checked, write_safetensors_atomic,
};
use super::{NnError, NnResult};

/// Hyper-parameters; defaults are PyTorch's (lr 1e-3, betas 0.9/0.999, eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The optimizer: shallow clones of the parameters it updates plus their moment estimates.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    step: i64,
    names: Vec<String>,
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

const STEP_TENSOR: &str = "step";

impl Adam {
    /// A fresh optimizer (zero moments, step 0) over named parameters, e.g.
    /// `model.named_parameters()`. The tensors share storage with the model's.
    pub fn new(named_params: Vec<(String, Tensor)>, config: AdamConfig) -> NnResult<Self> {
        let mut names = Vec::with_capacity(named_params.len());
        let mut params = Vec::with_capacity(named_params.len());
        let mut exp_avg = Vec::with_capacity(named_params.len());
        let mut exp_avg_sq = Vec::with_capacity(named_params.len());
        for (name, param) in named_params {
            exp_avg.push(param.f_zeros_like()?);
            exp_avg_sq.push(param.f_zeros_like()?);
            names.push(name);
            params.push(param);
        }
        Ok(Adam {
            config,
            step: 0,
            names,
            params,
            exp_avg,
            exp_avg_sq,
        })
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Number of steps taken so far.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Sets every parameter's gradient to zero (before the next backward pass).
    pub fn zero_grad(&mut self) {
        for param in &mut self.params {
            param.zero_grad();
        }
    }

    /// The gradients of the parameters, in order (undefined tensors where none was computed).
    pub fn gradients(&self) -> Vec<Tensor> {
        self.params.iter().map(Tensor::grad).collect()
    }

    /// One update, as `torch.optim.Adam` does on CPU:
    /// m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²;
    /// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε).
    /// Parameters without a gradient are left alone.
    pub fn step(&mut self) -> NnResult<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = self.config;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.sqrt();
        for ((param, exp_avg), exp_avg_sq) in self
            .params
            .iter_mut()
            .zip(self.exp_avg.iter_mut())
            .zip(self.exp_avg_sq.iter_mut())
        {
            let grad = param.grad();
            if !grad.defined() {
                continue;
            }
            let _ = exp_avg.f_lerp_(&grad, 1.0 - beta1)?;
            let _ = exp_avg_sq.f_mul_scalar_(beta2)?;
            // addcmul_(g, g, value = 1 − β2) evaluates (value · g) · g.
            let _ = exp_avg_sq.f_add_(&grad.f_mul_scalar(1.0 - beta2)?.f_mul(&grad)?)?;
            let denom = exp_avg_sq
                .f_sqrt()?
                .f_div_scalar(bias_correction2_sqrt)?
                .f_add_scalar(eps)?;
            // addcdiv_(m, denom, value = −step_size) evaluates (value · m) / denom.
            let _ = param.f_add_(&exp_avg.f_mul_scalar(-step_size)?.f_div(&denom)?)?;
        }
        Ok(())
    }

    /// The state as named tensors: `step` (int64 scalar), `exp_avg.<param>`, `exp_avg_sq.<param>`.
    pub fn named_state(&self) -> NnResult<Vec<(String, Tensor)>> {
        let mut named = vec![(STEP_TENSOR.to_string(), Tensor::f_from_slice(&[self.step])?)];
        for ((name, exp_avg), exp_avg_sq) in
            self.names.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq)
        {
            named.push((format!("exp_avg.{name}"), exp_avg.shallow_clone()));
            named.push((format!("exp_avg_sq.{name}"), exp_avg_sq.shallow_clone()));
        }
        Ok(named)
    }

    /// Writes the state as safetensors (sorted names, deterministic bytes).
    pub fn save(&self, path: &Path) -> NnResult<()> {
        write_safetensors_atomic(path, &self.named_state()?)
    }

    /// Restores a state written by [`Adam::save`] for the same parameter names and shapes.
    pub fn load(&mut self, path: &Path) -> NnResult<()> {
        let mut stored: BTreeMap<String, Tensor> = read_safetensors_map(path)?;
        let step = stored
            .remove(STEP_TENSOR)
            .ok_or_else(|| NnError::MissingTensor {
                path: path.to_path_buf(),
                name: STEP_TENSOR.to_string(),
                expected: "[1] (int64)".into(),
            })?;
        if step.kind() != Kind::Int64 || step.numel() != 1 {
            return Err(NnError::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "`step` must be one int64, found {:?} of shape {:?}",
                    step.kind(),
                    step.size()
                ),
            });
        }
        let step = step.f_int64_value(&[0])?;
        let _guard = tch::no_grad_guard();
        for ((name, exp_avg), exp_avg_sq) in self
            .names
            .iter()
            .zip(self.exp_avg.iter_mut())
            .zip(self.exp_avg_sq.iter_mut())
        {
            let shape = exp_avg.size();
            exp_avg.f_copy_(&take_checked(
                &mut stored,
                path,
                &format!("exp_avg.{name}"),
                &shape,
            )?)?;
            exp_avg_sq.f_copy_(&take_checked(
                &mut stored,
                path,
                &format!("exp_avg_sq.{name}"),
                &shape,
            )?)?;
        }
        reject_leftovers(stored, path)?;
        self.step = step;
        Ok(())
    }
}
