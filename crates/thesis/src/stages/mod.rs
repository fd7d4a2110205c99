//! The thesis's stage plugins. Each file is one plugin: it parses parameters, calls the domain
//! code and writes outputs; [`register`] adds them all to a registry.

use pipe_engine::Registry;

pub mod analysis;
pub mod data;
pub mod graphs;
pub mod import;
pub mod prune;
pub mod random_train;
pub mod report;
pub mod train;

/// Adds every thesis plugin to `registry`.
pub fn register(registry: &mut Registry) {
    registry
        .register(data::Reber)
        .register(data::CsvImport)
        .register(graphs::RandomGraphs)
        .register(graphs::GraphProperties)
        .register(train::Train)
        .register(import::Import)
        .register(analysis::DataTable)
        .register(analysis::Join)
        .register(analysis::Correlate)
        .register(analysis::Regress)
        .register(report::Report)
        .register(random_train::TrainRandom)
        .register(prune::Prune);
}

/// The libtorch device of a stage's `device` parameter on the GPUs the executor gave the
/// instance (`StageContext::gpus`).
pub(crate) fn torch_device(
    device: crate::nn::DeviceSpec,
    ctx: &pipe_engine::stage::StageContext<'_>,
) -> Result<tch::Device, pipe_engine::stage::StageError> {
    let ordinals: Vec<usize> = ctx.gpus.iter().map(|g| g.ordinal).collect();
    let resolved = device
        .resolve(&ordinals)
        .map_err(|e| pipe_engine::stage::StageError::Failed(format!("{}: {e}", ctx.instance)))?;
    if resolved != tch::Device::Cpu {
        tracing::info!("{}: computing on {resolved:?}", ctx.instance);
    }
    Ok(resolved)
}
