//! `pipe`: a declarative pipeline orchestrator for machine-learning experiments.
//!
//! A pipeline file ([`spec`]) expands into a validated DAG of stage instances ([`plan`]); the
//! executor ([`exec`]) reuses what the content-addressed cache ([`store`]) already holds and runs
//! the rest through stage plugins ([`stage`], [`stages`]).

pub mod analysis;
pub mod cli;
pub mod data;
pub mod exec;
pub mod graph;
pub mod nn;
pub mod plan;
pub mod report;
pub mod spec;
pub mod stage;
pub mod stages;
pub mod stats;
pub mod store;

pub use exec::{run, run_with, Event, EventRecord, Executor, Outcome, RunOptions, RunSummary};
pub use plan::Plan;
pub use store::Store;
