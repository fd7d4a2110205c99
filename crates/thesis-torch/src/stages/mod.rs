//! The computation of the thesis's tensor plugins, one file each; the plugins themselves
//! (parameters, outputs, checks) are declared in `pipe_thesis::stages`.

use pipe_engine::stage::{StageContext, StageError};
use pipe_engine::Registry;
use pipe_thesis::model::DeviceSpec;
use pipe_thesis::stages::TensorBodies;

pub mod import;
pub mod prune;
pub mod random_train;
pub mod train;

/// The four computations, for [`pipe_thesis::stages::register`].
pub fn bodies() -> TensorBodies {
    TensorBodies {
        train: train::run,
        prune: prune::run,
        train_random: random_train::run,
        import: import::run,
    }
}

/// Adds every thesis plugin to `registry`, the tensor plugins with their computation.
pub fn register(registry: &mut Registry) {
    pipe_thesis::stages::register(registry, Some(bodies()));
}

/// The libtorch device of a stage's `device` parameter on the GPUs the executor gave the
/// instance (`StageContext::gpus`).
pub(crate) fn torch_device(
    device: DeviceSpec,
    ctx: &StageContext<'_>,
) -> Result<tch::Device, StageError> {
    let ordinals: Vec<usize> = ctx.gpus.iter().map(|g| g.ordinal).collect();
    let resolved = crate::nn::device::resolve(device, &ordinals)
        .map_err(|e| StageError::Failed(format!("{}: {e}", ctx.instance)))?;
    if resolved != tch::Device::Cpu {
        tracing::info!("{}: computing on {resolved:?}", ctx.instance);
    }
    Ok(resolved)
}
