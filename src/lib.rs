//! `pipe`: a declarative pipeline orchestrator for machine-learning experiments.
//!
//! The engine ([`pipe_engine`]) and the thesis plugins ([`pipe_thesis`]) are crates of their own;
//! this crate is the command line ([`cli`]) and [`registry`], which puts both sets of plugins
//! into the one registry the binary passes to the engine. The re-exports keep one path for
//! everything (`pipe::plan`, `pipe::model`, …). Nothing here links libtorch: the neural networks
//! are `pipe_thesis_torch`'s, and the `pipe-torch` binary (crates/pipe-torch) computes with them.

pub mod cli;
pub mod handover;

pub use pipe_engine::{
    cmd, compare, exec, experiments, plan, run, run_with, spec, stage, store, Event, EventRecord,
    Executor, Outcome, Plan, Registry, RunOptions, RunSummary, Store,
};
pub use pipe_thesis::{analysis, data, graph, model, report, stages, stats};

/// Every plugin `pipe` ships: the engine's `cmd` and the thesis's plugins, whose tensor plugins
/// are declared but computed by `pipe-torch` (`pipe_thesis_torch::registry` has them runnable).
pub fn registry() -> Registry {
    let mut registry = Registry::with_cmd();
    pipe_thesis::register(&mut registry, None);
    registry
}
