//! `rnn.prune`: magnitude pruning and retraining of a trained model (thesis experiment 2,
//! SPEC §3). For every level p the selected recurrent matrices keep `|w| >= percentile_p(|w|)`;
//! the pruned model is evaluated (epoch 0) and retrained with a fresh Adam and the mask fixed,
//! evaluating on the test split after every epoch. By default (`strategy: auto`) the levels
//! retrain natively on the CPU (`NativeNetwork`, plain Rust, levels in parallel on `threads`);
//! `sequential` retrains them one at a time on libtorch, `batched` all levels as one stacked
//! tensor program (`StackedModels`). Every finished epoch is checkpointed, so a
//! killed run resumes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Body;
use crate::model::{defaults, DeviceSpec, PruneTarget, Strategy, ThresholdScope};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

/// The plugin; its computation is `pipe-thesis-torch`'s (`None` in a binary without libtorch).
pub struct Prune(pub Option<Body<PruneParams>>);

/// Defaults are the thesis's settings (SPEC §3).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneParams {
    /// Which matrices are pruned: both | ih (input-to-hidden) | hh (hidden-to-hidden).
    #[serde(default = "default_weights")]
    pub weights: PruneTarget,
    /// Pruning levels in percent (0..=100), each retrained separately.
    #[serde(default = "default_levels")]
    pub levels: Vec<u32>,
    /// global: one percentile over the selected matrices of all layers; layer: one per matrix.
    #[serde(default)]
    pub threshold: ThresholdScope,
    #[serde(default = "default_retrain_epochs")]
    pub retrain_epochs: usize,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Gradient-norm clipping (0 disables).
    #[serde(default = "defaults::clip")]
    pub clip: f64,
    /// Accuracy points (percent) a pruned model may lose and still count as regained/safe.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// auto (the fastest for the variant), native (plain Rust, levels in parallel), sequential
    /// (libtorch, one level at a time) or batched (libtorch, all levels as one tensor
    /// program); results agree to ~1e-4.
    #[serde(default)]
    pub strategy: Strategy,
    /// Threads: levels in parallel (native) or libtorch intra-op threads (the others, whose
    /// results depend on it); part of the key either way.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// cpu, cuda (auto then batches all levels; the GPU the executor gives the instance) or cuda:N (the N-th of its GPUs).
    /// Part of the key, as results differ by device; left out of it when `cpu`, so CPU keys
    /// are what they were before devices existed.
    #[serde(default, skip_serializing_if = "DeviceSpec::is_cpu")]
    pub device: DeviceSpec,
}

fn default_weights() -> PruneTarget {
    PruneTarget::Both
}

fn default_levels() -> Vec<u32> {
    (1..=10).map(|step| step * 10).collect()
}

fn default_retrain_epochs() -> usize {
    10
}

fn default_tolerance() -> f64 {
    1.0
}

impl Plugin for Prune {
    type Params = PruneParams;
    const KIND: &'static str = "rnn.prune";
    const VERSION: u32 = 4;
    const HEADLINE_METRICS: &'static [&'static str] = &["unpruned_test_acc", "safe_level"];
    const ABOUT: &'static str =
        "Prune a trained model's recurrent weights by magnitude at several levels and retrain each";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![
            InputDecl {
                name: "model",
                fan_in: false,
                required: true,
                about: "model.safetensors from rnn.train",
            },
            InputDecl {
                name: "config",
                fan_in: false,
                required: true,
                about: "config.json from rnn.train",
            },
            InputDecl {
                name: "data",
                fan_in: false,
                required: true,
                about: "dataset.csv (string,valid,split) the model was trained on",
            },
        ])
    }

    fn outputs(&self, _: &PruneParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("curves", "curves.csv"),
            OutputDecl::new("summary", "summary.csv"),
            OutputDecl::new("safe", "safe.json"),
            OutputDecl::new("models", "models"),
        ]
    }

    fn gpus(&self, params: &PruneParams) -> u32 {
        params.device.gpus()
    }

    fn threads(&self, params: &PruneParams) -> usize {
        params.threads
    }

    fn check(&self, p: &PruneParams) -> Result<(), (String, String)> {
        if p.levels.is_empty() {
            return Err(("levels".into(), "give at least one level".into()));
        }
        if let Some(level) = p.levels.iter().find(|&&l| l > 100) {
            return Err(("levels".into(), format!("{level} is not within 0..=100")));
        }
        let mut sorted = p.levels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != p.levels.len() {
            return Err(("levels".into(), "levels must be distinct".into()));
        }
        defaults::check_optimiser(p.batch_size, p.lr, p.clip)?;
        if !p.device.is_cpu() && p.strategy == Strategy::Native {
            return Err((
                "strategy".into(),
                format!(
                    "`native` computes on the CPU only, not on `device: {}`; use `batched` (or \
                     `auto`, which batches on a GPU), or `device: cpu`",
                    p.device
                ),
            ));
        }
        if !(0.0..=100.0).contains(&p.tolerance) {
            return Err(("tolerance".into(), "must be within 0..=100 points".into()));
        }
        Ok(())
    }

    fn run(&self, params: PruneParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        super::compute(Self::KIND, self.0, params, ctx)
    }

    fn runnable(&self) -> bool {
        self.0.is_some()
    }
}
