//! The sections of the HTML report, one file each, in the order the report shows them.

mod base;
mod correlation;
mod pearson_tables;
mod pruning;
mod random;
mod regression;
mod retraining;
mod run;
mod scatter;
mod seeds;
mod thesis_models;

pub(super) use base::base_section;
pub(super) use correlation::correlation_section;
pub(super) use pearson_tables::pearson_tables_section;
pub(super) use pruning::pruning_section;
pub(super) use random::random_section;
pub(super) use regression::regression_section;
pub(super) use retraining::retraining_section;
pub(super) use run::run_section;
pub(super) use scatter::scatter_section;
pub(super) use seeds::seeds_section;
pub(super) use thesis_models::thesis_models_section;
