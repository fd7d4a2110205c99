//! The thesis's stage plugins. Each file is one plugin: it parses parameters, calls the domain
//! code and writes outputs; [`register`] adds them all to a registry.
//!
//! The four plugins that compute on libtorch (`rnn.train`, `rnn.prune`, `rnn.train_random`,
//! `model.import`) are declared here, so a binary without libtorch plans, keys and reports them;
//! their computation ([`TensorBodies`]) is `pipe-thesis-torch`'s.

use pipe_engine::stage::{StageContext, StageError};
use pipe_engine::Registry;

pub mod analysis;
pub mod data;
pub mod graphs;
pub mod import;
pub mod prune;
pub mod random_train;
pub mod report;
pub mod train;

/// The computation of a plugin declared here and computed in another crate.
pub type Body<P> = fn(P, &mut StageContext<'_>) -> Result<(), StageError>;

/// The computations of the tensor plugins, which `pipe-thesis-torch` provides.
#[derive(Clone, Copy)]
pub struct TensorBodies {
    pub train: Body<train::TrainParams>,
    pub prune: Body<prune::PruneParams>,
    pub train_random: Body<random_train::TrainRandomParams>,
    pub import: Body<import::ImportParams>,
}

/// Adds every thesis plugin to `registry`; without `tensors`, the tensor plugins are declared
/// but not runnable ([`pipe_engine::stage::Plugin::runnable`]).
pub fn register(registry: &mut Registry, tensors: Option<TensorBodies>) {
    registry
        .register(data::Reber)
        .register(data::CsvImport)
        .register(graphs::RandomGraphs)
        .register(graphs::GraphProperties)
        .register(train::Train(tensors.map(|t| t.train)))
        .register(import::Import(tensors.map(|t| t.import)))
        .register(analysis::DataTable)
        .register(analysis::Join)
        .register(analysis::Correlate)
        .register(analysis::Regress)
        .register(report::Report)
        .register(random_train::TrainRandom(tensors.map(|t| t.train_random)))
        .register(prune::Prune(tensors.map(|t| t.prune)));
}

/// Runs `body`, or says why this binary cannot (the engine checks `runnable` first, so this is
/// the message of a path that should not be reached).
fn compute<P>(
    kind: &str,
    body: Option<Body<P>>,
    params: P,
    ctx: &mut StageContext<'_>,
) -> Result<(), StageError> {
    match body {
        Some(body) => body(params, ctx),
        None => Err(StageError::Failed(format!(
            "`{kind}` computes on libtorch, which this binary does not link; `pipe` hands runs \
             that compute it to `pipe-torch` beside it (built by `make build`)"
        ))),
    }
}
