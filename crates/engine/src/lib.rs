//! `pipe`'s engine: a pipeline file ([`spec`]) expands into a validated DAG of stage instances
//! ([`plan`]); the executor ([`exec`]) reuses what the content-addressed cache ([`store`]) already
//! holds and runs the rest through stage plugins ([`stage`]), looked up in a [`Registry`] the
//! caller builds and passes in. It knows nothing of machine learning and does not link libtorch;
//! its one built-in plugin is [`cmd`].

pub mod atomic;
pub mod cmd;
pub mod compare;
pub mod exec;
pub mod experiments;
pub mod phases;
pub mod plan;
pub mod spec;
pub mod stage;
pub mod store;

pub use exec::{run, run_with, Event, EventRecord, Executor, Outcome, RunOptions, RunSummary};
pub use plan::Plan;
pub use stage::Registry;
pub use store::Store;
