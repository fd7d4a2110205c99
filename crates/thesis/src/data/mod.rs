//! The Reber-grammar dataset: generating it (`reber`), holding, reading,
//! writing, summarising and importing it (`dataset`), and turning its strings
//! into padded batches of ASCII codes for training (`encode`).
//!
//! Everything here is plain Rust (no tensors): the `nn` module wraps the
//! batches from [`pad_batch`] in tensors itself.

pub mod dataset;
pub mod encode;
pub mod reber;

pub use dataset::{
    import, ClassCounts, DataError, Dataset, ImportSpec, Row, Split, Summary, TestSize,
};
pub use encode::{encode, pad_batch, pad_encoded, PaddedBatch, PAD_CODE};
pub use reber::{
    accepts, generate, ForkProbabilities, GeneratorParams, LabelSet, REBER_EDGES, REBER_LABELS,
};
