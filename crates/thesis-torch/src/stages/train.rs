//! `rnn.train`'s computation: trains the model on the native kernels or libtorch, one epoch and
//! checkpoint at a time, and writes the model, its config and the metrics.

use std::path::Path;
use std::time::Instant;

use crate::nn::native::{self, TrainingSettings};
use crate::nn::{
    self, defaults, load_examples, Adam, EpochMetrics, ModelConfig, RecurrentModel,
    TrainingProgress,
};
use pipe_engine::stage::{StageContext, StageError};
use pipe_thesis::stages::train::{TrainEngine, TrainParams};

/// Trains the model an `rnn.train` instance declares and writes its outputs (the plugin is
/// [`pipe_thesis::stages::train::Train`]).
pub fn run(params: TrainParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    // Held until the outputs are written: every tensor of this instance is computed with
    // exactly `threads` libtorch threads, whatever runs beside it.
    let _torch = nn::TorchThreads::acquire(params.threads);
    let device = super::torch_device(params.device, ctx)?;
    let (train, test) = load_examples(ctx.input("data")?).map_err(StageError::failed)?;
    let config = params.model_config();
    // Initialised on the CPU (the seed's values on every device), then moved.
    let mut model = RecurrentModel::new(config.clone(), ctx.seed)
        .and_then(|m| m.into_device(device))
        .map_err(StageError::failed)?;
    let progress = match params.engine() {
        TrainEngine::Native => train_native(&params, &model, &train, &test, ctx)?,
        TrainEngine::Loop | TrainEngine::Fused => {
            train_libtorch(&params, &mut model, &train, &test, ctx)?
        }
    };
    finish(ctx, &model, &config, &progress)
}

fn report_epoch(ctx: &StageContext<'_>, epochs: usize, m: &EpochMetrics) {
    ctx.progress(&format!(
        "epoch {}/{epochs} train acc {:.4} test acc {:.4}",
        m.epoch, m.train_acc, m.test_acc
    ));
}

/// Trains `model` in place on the native kernels (`nn::native::train_model`).
fn train_native(
    params: &TrainParams,
    model: &RecurrentModel,
    train: &[nn::Example],
    test: &[nn::Example],
    ctx: &mut StageContext<'_>,
) -> Result<TrainingProgress, StageError> {
    let settings = TrainingSettings {
        batch_size: params.batch_size,
        clip_norm: defaults::clip_norm(params.clip),
        adam: defaults::adam(params.lr),
        shuffle_seed: ctx.seed,
    };
    let ctx: &StageContext<'_> = ctx;
    native::train_model(
        model,
        train,
        test,
        &settings,
        params.epochs,
        &ctx.checkpoint_dir,
        |m| report_epoch(ctx, params.epochs, m),
    )
    .map_err(StageError::failed)
}

/// Trains `model` in place on libtorch, one epoch and checkpoint at a time.
fn train_libtorch(
    params: &TrainParams,
    model: &mut RecurrentModel,
    train: &[nn::Example],
    test: &[nn::Example],
    ctx: &mut StageContext<'_>,
) -> Result<TrainingProgress, StageError> {
    let mut adam = Adam::new(model.named_parameters(), defaults::adam(params.lr))
        .map_err(StageError::failed)?;
    let mut progress = nn::load_checkpoint(&ctx.checkpoint_dir, model, &mut adam)
        .map_err(StageError::failed)?
        .unwrap_or_default();
    if progress.epochs_done > 0 {
        tracing::info!(
            "{}: resuming after epoch {}",
            ctx.instance,
            progress.epochs_done
        );
    }
    for epoch in progress.epochs_done + 1..=params.epochs {
        let started = Instant::now();
        let (train_loss, train_acc) = nn::train_epoch(
            model,
            &mut adam,
            train,
            params.batch_size,
            defaults::clip_norm(params.clip),
            ctx.seed,
            epoch as u64,
        )
        .map_err(StageError::failed)?;
        let (test_loss, test_acc) =
            nn::evaluate(model, test, params.batch_size).map_err(StageError::failed)?;
        progress.history.push(EpochMetrics {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            seconds: started.elapsed().as_secs_f64(),
        });
        progress.epochs_done = epoch;
        nn::save_checkpoint(&ctx.checkpoint_dir, model, &adam, &progress)
            .map_err(StageError::failed)?;
        if let Some(last) = progress.history.last() {
            report_epoch(ctx, params.epochs, last);
        }
    }
    Ok(progress)
}

/// Writes the model, its config and the metrics; records the final accuracy as a metric.
fn finish(
    ctx: &mut StageContext<'_>,
    model: &RecurrentModel,
    config: &ModelConfig,
    progress: &TrainingProgress,
) -> Result<(), StageError> {
    model
        .save(&ctx.output("model.safetensors"))
        .map_err(StageError::failed)?;
    let json = serde_json::to_vec_pretty(config).map_err(StageError::failed)?;
    std::fs::write(ctx.output("config.json"), json)
        .map_err(|e| StageError::io("cannot write config.json", e))?;
    write_metrics(&ctx.output("metrics.csv"), &progress.history)?;
    if let Some(last) = progress.history.last() {
        ctx.set_metrics(serde_json::json!({
            "epochs": last.epoch,
            "test_acc": last.test_acc,
            "train_acc": last.train_acc,
            "seconds_per_epoch": progress.history.iter().map(|m| m.seconds).sum::<f64>() / progress.history.len() as f64,
        }));
    }
    Ok(())
}

/// Writes `metrics.csv` in the thesis's column order plus `seconds`.
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<(), StageError> {
    let mut writer = csv::Writer::from_path(path).map_err(StageError::failed)?;
    writer
        .write_record([
            "epoch",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "seconds",
        ])
        .map_err(StageError::failed)?;
    for m in history {
        writer
            .write_record([
                m.epoch.to_string(),
                m.train_loss.to_string(),
                m.train_acc.to_string(),
                m.test_loss.to_string(),
                m.test_acc.to_string(),
                format!("{:.3}", m.seconds),
            ])
            .map_err(StageError::failed)?;
    }
    writer
        .flush()
        .map_err(|e| StageError::io("cannot write metrics.csv", e))
}
