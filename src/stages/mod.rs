//! Built-in stage plugins. Each file is one plugin; `builtins` is the registry's table.

use std::sync::Arc;

use crate::stage::Stage;

pub mod analysis;
pub mod cmd;
pub mod data;
pub mod graphs;
pub mod prune;
pub mod random_train;
pub mod report;
pub mod train;

/// Every built-in plugin.
pub fn builtins() -> Vec<Arc<dyn Stage>> {
    vec![
        Arc::new(cmd::Cmd),
        Arc::new(data::Reber),
        Arc::new(data::CsvImport),
        Arc::new(graphs::RandomGraphs),
        Arc::new(graphs::GraphProperties),
        Arc::new(train::Train),
        Arc::new(analysis::DataTable),
        Arc::new(analysis::Join),
        Arc::new(analysis::Correlate),
        Arc::new(analysis::Regress),
        Arc::new(report::Report),
        Arc::new(random_train::TrainRandom),
        Arc::new(prune::Prune),
    ]
}
