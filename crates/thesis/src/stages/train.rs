//! `rnn.train`: trains one masked recurrent classifier (thesis experiment 1) on a `dataset.csv`,
//! on the native kernels or libtorch, evaluating on the test split after every epoch,
//! checkpointing every epoch so a killed run resumes at its last finished epoch and ends
//! byte-identical to an uninterrupted one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Body;
use crate::model::{
    defaults, CellEngine, DeviceSpec, EmbeddingInit, ModelConfig, Readout, Variant,
};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

/// The plugin; its computation is `pipe-thesis-torch`'s (`None` in a binary without libtorch).
pub struct Train(pub Option<Body<TrainParams>>);

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
        super::compute(Self::KIND, self.0, params, ctx)
    }

    fn runnable(&self) -> bool {
        self.0.is_some()
    }
}
