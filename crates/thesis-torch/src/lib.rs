//! The thesis's neural networks ([`nn`]: libtorch through `tch`, and the native kernels) and the
//! computation of the plugins that use them ([`stages`]). `pipe-thesis` declares those plugins;
//! [`register`] adds them with their computation, as `pipe-torch` does.

pub mod nn;
pub mod stages;

// The domain code `nn` builds on, at the paths it had when both lived in one crate.
pub use pipe_thesis::{data, graph};

pub use stages::register;

/// Every plugin `pipe` ships, all runnable: the engine's `cmd`, the thesis's plugins and their
/// tensor computations.
pub fn registry() -> pipe_engine::Registry {
    let mut registry = pipe_engine::Registry::with_cmd();
    register(&mut registry);
    registry
}
