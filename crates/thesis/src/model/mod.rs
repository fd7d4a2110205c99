//! The recurrent models of the thesis as plugins declare them and keys hash them, without
//! libtorch: configuration, device, pruning and import settings, and the training defaults.
//! `pipe-thesis-torch` computes with these types (its `nn` re-exports them).

pub mod config;
pub mod defaults;
pub mod device;
pub mod import;
pub mod prune;

pub use config::{
    mask_name, param_name, CellEngine, EmbeddingInit, ModelConfig, Readout, Variant, WeightKind,
};
pub use device::{DeviceError, DeviceSpec};
pub use import::{anchored_pattern, BadPattern, WeightFormat};
pub use prune::{within_tolerance, PruneTarget, Strategy, ThresholdScope};
