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
