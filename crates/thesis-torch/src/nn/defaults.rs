//! The thesis's training defaults ([`pipe_thesis::model::defaults`]) and the Adam settings they
//! give libtorch and the native kernels.

pub use pipe_thesis::model::defaults::*;

/// The Adam settings of a plugin's `lr` (the rest are PyTorch's defaults).
pub fn adam(lr: f64) -> super::AdamConfig {
    super::AdamConfig {
        lr,
        ..super::AdamConfig::default()
    }
}
