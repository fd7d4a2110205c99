//! `rnn.train`: trains one masked recurrent classifier (thesis experiment 1) on a `dataset.csv`,
//! on the native kernels or libtorch, evaluating on the test split after every epoch,
//! checkpointing every epoch so a killed run resumes at its last finished epoch and ends
//! byte-identical to an uninterrupted one.

use crate::nn::{defaults, load_examples};
use std::path::Path;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::nn::native::{self, TrainingSettings};
use crate::nn::{
    self, Adam, CellEngine, DeviceSpec, EmbeddingInit, EpochMetrics, ModelConfig, Readout,
    RecurrentModel, TrainingProgress, Variant,
};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

pub struct Train;

/// Where `rnn.train` computes. All three compute the same mathematics on masked weights and
/// differ in the last bits, so the choice is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrainEngine {
    /// The native kernels (`nn::native`, plain Rust, CPU only).
    Native,
    /// libtorch, hand-written masked cells.
    Loop,
    /// libtorch's fused multi-layer kernels on masked weights.
    Fused,
}

/// Defaults are the thesis's settings (SPEC §2).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// rnn_tanh | rnn_relu | lstm | gru
    pub variant: Variant,
    #[serde(default = "defaults::layers")]
    pub layers: i64,
    #[serde(default = "defaults::width")]
    pub hidden: i64,
    #[serde(default = "defaults::width")]
    pub embedding: i64,
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Gradient-norm clipping (0 disables).
    #[serde(default = "defaults::clip")]
    pub clip: f64,
    /// last_padded (the thesis's code) or true_length.
    #[serde(default)]
    pub readout: Readout,
    /// Where the model trains: `native` (the native kernels, CPU only; the default on the CPU:
    /// `pipe-bench train` measures it 1.5–2.3× the loop cells, and 0.86× the fused cell for
    /// LSTM, kept for one engine with machine-independent bits), `loop` (libtorch,
    /// hand-written masked cells) or `fused` (libtorch's fused kernels on masked weights; the
    /// default on a GPU). Results differ in the last bits, so it is part of the key.
    #[serde(default)]
    pub engine: Option<TrainEngine>,
    /// Embedding initialisation: normal (PyTorch's nn.Embedding, what the thesis ran) or uniform.
    #[serde(default)]
    pub embedding_init: EmbeddingInit,
    /// libtorch intra-op threads; results depend on it, so it is part of the key.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// cpu, cuda (the GPU the executor gives the instance) or cuda:N (the N-th of its GPUs).
    /// Part of the key, as results differ by device; left out of it when `cpu`, so CPU keys
    /// are what they were before devices existed.
    #[serde(default, skip_serializing_if = "DeviceSpec::is_cpu")]
    pub device: DeviceSpec,
}

impl TrainParams {
    /// The engine this instance trains on.
    pub fn engine(&self) -> TrainEngine {
        self.engine.unwrap_or(if self.device.is_cpu() {
            TrainEngine::Native
        } else {
            TrainEngine::Fused
        })
    }

    /// The model's configuration; a natively trained model evaluates on libtorch with the
    /// hand-written cells, the native kernels' reference.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            variant: self.variant,
            vocab_size: 128,
            embedding_dim: self.embedding,
            hidden_size: self.hidden,
            num_layers: self.layers,
            num_classes: 2,
            readout: self.readout,
            // On a GPU, libtorch's fused kernels are cuDNN's.
            engine: match self.engine() {
                TrainEngine::Native | TrainEngine::Loop => CellEngine::Loop,
                TrainEngine::Fused => CellEngine::Fused,
            },
            embedding_init: self.embedding_init,
        }
    }
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

impl Plugin for Train {
    type Params = TrainParams;
    const KIND: &'static str = "rnn.train";
    // 2: native training is the CPU default.
    const VERSION: u32 = 2;
    const HEADLINE_METRICS: &'static [&'static str] = &["test_acc", "train_acc", "epochs"];
    const ABOUT: &'static str =
        "Train a masked RNN/LSTM/GRU classifier (Embedding → L recurrent layers → Linear)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![InputDecl {
            name: "data",
            fan_in: false,
            required: true,
            about: "dataset.csv (string,valid,split) from data.reber or data.csv",
        }])
    }

    fn outputs(&self, _: &TrainParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("model", "model.safetensors"),
            OutputDecl::new("config", "config.json"),
            OutputDecl::new("metrics", "metrics.csv"),
        ]
    }

    fn threads(&self, params: &TrainParams) -> usize {
        params.threads
    }

    fn gpus(&self, params: &TrainParams) -> u32 {
        params.device.gpus()
    }

    fn check(&self, p: &TrainParams) -> Result<(), (String, String)> {
        let positive = [
            ("layers", p.layers),
            ("hidden", p.hidden),
            ("embedding", p.embedding),
        ];
        for (name, value) in positive {
            if value < 1 {
                return Err((name.into(), format!("must be at least 1, got {value}")));
            }
        }
        if p.epochs == 0 {
            return Err(("epochs".into(), "must be at least 1".into()));
        }
        if p.engine() == TrainEngine::Native && !p.device.is_cpu() {
            return Err((
                "engine".into(),
                "the native kernels run on the CPU only; use `fused` (cuDNN) on a GPU, or \
                 `device: cpu`"
                    .into(),
            ));
        }
        defaults::check_optimiser(p.batch_size, p.lr, p.clip)
    }

    fn run(&self, params: TrainParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
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
