//! `rnn.prune`: magnitude pruning and retraining of a trained model (thesis experiment 2,
//! SPEC §3). For every level p the selected recurrent matrices keep `|w| >= percentile_p(|w|)`;
//! the pruned model is evaluated (epoch 0) and retrained with a fresh Adam and the mask fixed,
//! evaluating on the test split after every epoch. By default (`strategy: auto`) the levels
//! retrain natively on the CPU ([`NativeNetwork`], plain Rust, levels in parallel on `threads`);
//! `sequential` retrains them one at a time on libtorch, `batched` all levels as one stacked
//! tensor program ([`StackedModels`]). Every finished epoch is checkpointed, so a
//! killed run resumes.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::nn::prune::within_tolerance;
use crate::nn::sweep::{
    finished_model, run_sweep, shuffle_seed, summarise, LevelResult, LevelSummary, Strategy,
    SweepError, SweepSettings,
};
use crate::nn::{self, DeviceSpec, ModelConfig, PruneTarget, RecurrentModel, ThresholdScope};
use crate::nn::{defaults, load_examples};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

impl From<SweepError> for StageError {
    fn from(error: SweepError) -> Self {
        StageError::failed(error)
    }
}

pub struct Prune;

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

/// `safe.json`: the highest level whose accuracy right after pruning stays within tolerance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeLevel {
    pub weights: PruneTarget,
    pub threshold: ThresholdScope,
    pub tolerance: f64,
    pub unpruned_test_acc: f64,
    pub unpruned_test_loss: f64,
    /// Highest level within tolerance right after pruning (null when none is).
    pub safe_level: Option<u32>,
    /// Every level within tolerance right after pruning, ascending.
    pub levels_within_tolerance: Vec<u32>,
}

fn write_curves(
    path: &Path,
    target: PruneTarget,
    results: &[LevelResult],
) -> Result<(), StageError> {
    let mut writer = csv::Writer::from_path(path).map_err(StageError::failed)?;
    writer
        .write_record([
            "weights",
            "prune",
            "epoch",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "seconds",
        ])
        .map_err(StageError::failed)?;
    for result in results {
        for m in &result.history {
            writer
                .write_record([
                    target.name().to_string(),
                    result.level.to_string(),
                    m.epoch.to_string(),
                    m.train_loss.to_string(),
                    m.train_acc.to_string(),
                    m.test_loss.to_string(),
                    m.test_acc.to_string(),
                    format!("{:.3}", m.seconds),
                ])
                .map_err(StageError::failed)?;
        }
    }
    writer.flush().map_err(io(path))
}

fn write_summary(
    path: &Path,
    target: PruneTarget,
    summaries: &[LevelSummary],
) -> Result<(), StageError> {
    let mut writer = csv::Writer::from_path(path).map_err(StageError::failed)?;
    writer
        .write_record([
            "weights",
            "prune",
            "sparsity",
            "acc_after_prune",
            "best_acc_retrained",
            "epochs_to_regain",
        ])
        .map_err(StageError::failed)?;
    let optional = |v: Option<String>| v.unwrap_or_default();
    for s in summaries {
        writer
            .write_record([
                target.name().to_string(),
                s.level.to_string(),
                s.sparsity.to_string(),
                s.acc_after_prune.to_string(),
                optional(s.best_acc_retrained.map(|a| a.to_string())),
                optional(s.epochs_to_regain.map(|e| e.to_string())),
            ])
            .map_err(StageError::failed)?;
    }
    writer.flush().map_err(io(path))
}

/// The sweep a `rnn.prune` instance asks for.
fn sweep_settings(params: &PruneParams, seed: u64, device: tch::Device) -> SweepSettings {
    SweepSettings {
        device,
        target: params.weights,
        scope: params.threshold,
        levels: params.levels.clone(),
        epochs: params.retrain_epochs,
        batch_size: params.batch_size,
        lr: params.lr,
        clip: defaults::clip_norm(params.clip),
        strategy: params.strategy,
        threads: params.threads,
        shuffle_seed: shuffle_seed(seed),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |e| StageError::io(path.display().to_string(), e)
}

fn read_config(path: &Path) -> Result<ModelConfig, StageError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text)
        .map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))
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
        // Held for the whole sweep (libtorch evaluates, masks and, but for `native`, retrains).
        let _torch = nn::TorchThreads::acquire(params.threads);
        let device = super::torch_device(params.device, ctx)?;
        let config = read_config(ctx.input("config")?)?;
        // Masks are computed from the CPU copy; the pruned models move to `device`.
        let base = RecurrentModel::load(config.clone(), ctx.input("model")?)
            .map_err(StageError::failed)?;
        let (train, test) = load_examples(ctx.input("data")?).map_err(StageError::failed)?;
        let (unpruned_loss, unpruned_acc) = if device == tch::Device::Cpu {
            nn::evaluate(&base, &test, params.batch_size)
        } else {
            RecurrentModel::load(config, ctx.input("model")?)
                .and_then(|m| m.into_device(device))
                .and_then(|m| nn::evaluate(&m, &test, params.batch_size))
        }
        .map_err(StageError::failed)?;
        let settings = sweep_settings(&params, ctx.seed, device);
        let checkpoint_dir = ctx.checkpoint_dir.clone();
        let results = {
            let ctx_ref: &StageContext<'_> = ctx;
            run_sweep(&base, &train, &test, &settings, &checkpoint_dir, &|m| {
                ctx_ref.progress(m)
            })?
        };

        let models_dir = ctx.output("models");
        std::fs::create_dir_all(&models_dir).map_err(io(&models_dir))?;
        for result in &results {
            let target = models_dir.join(format!("p{}.safetensors", result.level));
            let source = finished_model(&checkpoint_dir, result.level);
            std::fs::copy(&source, &target).map_err(io(&source))?;
        }
        write_curves(&ctx.output("curves.csv"), params.weights, &results)?;
        let summaries: Vec<LevelSummary> = results
            .iter()
            .map(|r| summarise(r, unpruned_acc, params.tolerance))
            .collect();
        write_summary(&ctx.output("summary.csv"), params.weights, &summaries)?;
        let mut levels_within_tolerance: Vec<u32> = summaries
            .iter()
            .filter(|s| within_tolerance(s.acc_after_prune, unpruned_acc, params.tolerance))
            .map(|s| s.level)
            .collect();
        levels_within_tolerance.sort_unstable();
        let safe = SafeLevel {
            weights: params.weights,
            threshold: params.threshold,
            tolerance: params.tolerance,
            unpruned_test_acc: unpruned_acc,
            unpruned_test_loss: unpruned_loss,
            safe_level: levels_within_tolerance.last().copied(),
            levels_within_tolerance,
        };
        std::fs::write(
            ctx.output("safe.json"),
            serde_json::to_vec_pretty(&safe).map_err(StageError::failed)?,
        )
        .map_err(|e| StageError::io("cannot write safe.json", e))?;
        ctx.set_metrics(serde_json::json!({
            "unpruned_test_acc": unpruned_acc,
            "safe_level": safe.safe_level,
            "levels": results.len(),
        }));
        Ok(())
    }
}
