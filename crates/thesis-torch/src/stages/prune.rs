//! `rnn.prune`'s computation: the sweep of pruning levels, retrained and checkpointed, and its
//! curves, summary and safe level.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::nn::sweep::{
    finished_model, run_sweep, shuffle_seed, summarise, LevelResult, LevelSummary, SweepError,
    SweepSettings,
};
use crate::nn::{
    self, defaults, load_examples, ModelConfig, PruneTarget, RecurrentModel, ThresholdScope,
};
use pipe_engine::stage::{StageContext, StageError};
use pipe_thesis::model::within_tolerance;
use pipe_thesis::stages::prune::PruneParams;

impl From<SweepError> for StageError {
    fn from(error: SweepError) -> Self {
        StageError::failed(error)
    }
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

/// Prunes and retrains the model of an `rnn.prune` instance and writes its outputs (the plugin is
/// [`pipe_thesis::stages::prune::Prune`]).
pub fn run(params: PruneParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    // Held for the whole sweep (libtorch evaluates, masks and, but for `native`, retrains).
    let _torch = nn::TorchThreads::acquire(params.threads);
    let device = super::torch_device(params.device, ctx)?;
    let config = read_config(ctx.input("config")?)?;
    // Masks are computed from the CPU copy; the pruned models move to `device`.
    let base =
        RecurrentModel::load(config.clone(), ctx.input("model")?).map_err(StageError::failed)?;
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
