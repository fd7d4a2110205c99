//! Masked recurrent networks on libtorch (`tch`): the cells and stacked model of the thesis,
//! a checkpointable Adam, and a deterministic, resumable training loop.
//!
//! Layout: [`cell`] holds the cell mathematics as functions of weight tensors (so randomly
//! structured networks can reuse them), [`model`] the Embedding → recurrent stack → Linear model
//! with PyTorch tensor names and safetensors I/O, [`adam`] the optimizer, [`train`] epochs,
//! evaluation, gradient clipping and checkpoints, [`random`] the randomly structured networks of
//! experiment 3, one at a time and batched many at once, and [`native`] the same networks computed
//! in plain Rust (the fast path for training hundreds of them). [`threads`] holds the rule for
//! libtorch's process-global thread count: compute tensors only while holding a
//! [`TorchThreads`] lease. [`import`] reads models trained elsewhere (safetensors, PyTorch files).

pub mod adam;
pub mod batch;
pub mod cell;
pub mod defaults;
pub mod device;
pub mod eval_file;
pub mod examples;
pub mod import;
pub mod model;
pub mod native;
pub mod prune;
pub mod random;
pub mod sweep;
pub mod tensors;
pub mod threads;
pub mod train;

use std::path::PathBuf;

pub use adam::{Adam, AdamConfig};
pub use batch::{make_batch, Batch, Example};
pub use cell::{CellEngine, LayerWeights, Variant};
pub use device::{DeviceError, DeviceSpec};
pub use eval_file::{evaluate_file, EvalError, EvalReport};
pub use examples::{load_examples, ExamplesError};
pub use model::{
    infer_config, mask_name, EmbeddingInit, ModelConfig, Readout, RecurrentModel, WeightKind,
};
pub use prune::{
    magnitude_masks, percentile, pruned_copy, sparsity, PruneTarget, PrunedMask, StackedModels,
    ThresholdScope,
};
pub use threads::TorchThreads;
pub use train::{
    clip_grad_norm, cross_entropy, epoch_order, evaluate, load_checkpoint, load_checkpoint_with,
    save_checkpoint, save_checkpoint_with, train_epoch, EpochMetrics, TrainingProgress,
};

/// Everything that can go wrong in this module; file errors name the file and the tensor.
///
/// Each message is complete on its own and no variant reports its cause again as a
/// [`std::error::Error::source`], so printing the whole chain (`{:#}`) says each cause once.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// libtorch's own message (no `#[from]`: that would make it the source as well and print it
    /// twice in a chain).
    #[error("libtorch error: {0}")]
    Torch(tch::TchError),
    #[error("{path}: not a readable safetensors file ({reason})")]
    Unreadable { path: PathBuf, reason: String },
    /// `expected` is the shape the model needs, as far as it is known (`[128, E]` before the
    /// embedding width is read).
    #[error("{path}: tensor `{name}` is missing (expected shape {expected})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: String,
    },
    #[error(
        "{path}: tensor `{name}` has {count} non-finite values (NaN or ±inf) of {total}; the \
         weights are unusable (a diverged training?)"
    )]
    NonFinite {
        path: PathBuf,
        name: String,
        count: i64,
        total: i64,
    },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("mask `{name}` has shape {found:?}, expected {expected:?}")]
    MaskShape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("{path}: tensor `{name}` has dtype {found:?}, expected {expected:?}")]
    WrongKind {
        path: PathBuf,
        name: String,
        found: tch::Kind,
        expected: tch::Kind,
    },
    #[error("{path}: unexpected tensor `{name}` (the model has no such parameter or mask)")]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("no such tensor in the model: `{0}`")]
    UnknownName(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}

impl From<tch::TchError> for NnError {
    fn from(error: tch::TchError) -> Self {
        NnError::Torch(error)
    }
}

/// A shape for messages: `[200, 50]`.
pub(crate) fn shape_text(shape: &[i64]) -> String {
    format!("{shape:?}")
}

/// Result alias of this module.
pub type NnResult<T> = Result<T, NnError>;
