//! `rnn.train_random`: trains one randomly structured recurrent network per graph of a
//! `graphs.json` (thesis experiment 3), many at once. Networks are ordered by size and cut into
//! groups of `group_size`; with the default `engine: native` each group's networks train in
//! parallel on `threads` threads with the plain-Rust kernels of `nn::native`, with
//! `engine: tensor` each group trains as one padded, batched libtorch program
//! (`nn::random::NetworkGroup`). Every network of a run sees the same batches in the same
//! order (one shuffle per epoch from the stage seed); the thesis trained each network in its own
//! process with its own shuffle, which is the same statistically (each network sees a uniformly
//! shuffled epoch), not bit for bit. A killed run resumes at group granularity: each finished
//! group's rows are checkpointed and reused.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Body;
use crate::model::{defaults, DeviceSpec, Readout, Variant};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

/// The plugin; its computation is `pipe-thesis-torch`'s (`None` in a binary without libtorch).
pub struct TrainRandom(pub Option<Body<TrainRandomParams>>);

/// Defaults are the thesis's settings (SPEC §4) and the fastest measured group size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRandomParams {
    /// rnn_tanh | rnn_relu | lstm | gru
    pub variant: Variant,
    #[serde(default = "random_defaults::epochs")]
    pub epochs: usize,
    #[serde(default = "random_defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Gradient-norm clipping per network (0 disables).
    #[serde(default = "defaults::clip")]
    pub clip: f64,
    /// last_padded (the thesis's code) or true_length.
    #[serde(default)]
    pub readout: Readout,
    /// native (plain-Rust kernels, networks in parallel; the fast one) or tensor (libtorch,
    /// padded batched groups).
    #[serde(default)]
    pub engine: RandomEngine,
    /// Networks per group: the unit of checkpointing (and, for the tensor engine, of batching:
    /// there results differ from other group sizes in the last bits of the floats).
    #[serde(default = "random_defaults::group_size")]
    pub group_size: usize,
    /// Only the first N graphs of each family (quick runs); all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Threads: networks trained in parallel (native) or libtorch intra-op threads (tensor,
    /// where results depend on it).
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// cpu, or (with `engine: tensor`) cuda (the GPU the executor gives the instance) or cuda:N (the N-th of its GPUs).
    /// Part of the key, as results differ by device; left out of it when `cpu`, so CPU keys
    /// are what they were before devices existed.
    #[serde(default, skip_serializing_if = "DeviceSpec::is_cpu")]
    pub device: DeviceSpec,
}

/// How `rnn.train_random` computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RandomEngine {
    /// `nn::native`: exact shapes, fused cell arithmetic, one network per thread.
    #[default]
    Native,
    /// `nn::random::NetworkGroup`: padded groups as one libtorch program.
    Tensor,
}

/// Where random networks differ from base training (thesis §4); the rest is [`crate::model::defaults`].
mod random_defaults {
    pub fn epochs() -> usize {
        15
    }
    pub fn batch_size() -> usize {
        128
    }
    /// Small enough that a kill loses little (8 LSTM networks × 15 epochs ≈ 2 minutes on one
    /// thread natively) and a multiple of common thread counts. For the tensor engine 2–4 is
    /// fastest (`pipe-bench structure`: larger groups lose more to padding than they save).
    pub fn group_size() -> usize {
        8
    }
}

impl Plugin for TrainRandom {
    type Params = TrainRandomParams;
    const KIND: &'static str = "rnn.train_random";
    const VERSION: u32 = 3;
    const HEADLINE_METRICS: &'static [&'static str] = &["networks", "mean_test_acc*"];
    const ABOUT: &'static str =
        "Train one randomly structured RNN/LSTM/GRU per graph (thesis §4), many at once";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![
            InputDecl {
                name: "graphs",
                fan_in: false,
                required: true,
                about: "graphs.json from graph.random",
            },
            InputDecl {
                name: "data",
                fan_in: false,
                required: true,
                about: "dataset.csv (string,valid,split) from data.reber or data.csv",
            },
        ])
    }

    fn outputs(&self, _: &TrainRandomParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("results", "results.csv"),
            OutputDecl::new("metrics", "metrics.csv"),
        ]
    }

    fn threads(&self, params: &TrainRandomParams) -> usize {
        params.threads
    }

    fn gpus(&self, params: &TrainRandomParams) -> u32 {
        params.device.gpus()
    }

    fn check(&self, p: &TrainRandomParams) -> Result<(), (String, String)> {
        for (name, value) in [("epochs", p.epochs), ("group_size", p.group_size)] {
            if value == 0 {
                return Err((name.into(), "must be at least 1".into()));
            }
        }
        if p.limit == Some(0) {
            return Err(("limit".into(), "must be at least 1 when given".into()));
        }
        if !p.device.is_cpu() && p.engine == RandomEngine::Native {
            return Err((
                "engine".into(),
                format!(
                    "the native engine computes on the CPU only, not on `device: {}`; set \
                     `engine: tensor` to train the networks as batched tensor programs there, \
                     or `device: cpu`",
                    p.device
                ),
            ));
        }
        defaults::check_optimiser(p.batch_size, p.lr, p.clip)
    }

    fn run(&self, params: TrainRandomParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        super::compute(Self::KIND, self.0, params, ctx)
    }

    fn runnable(&self) -> bool {
        self.0.is_some()
    }
}
