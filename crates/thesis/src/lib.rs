//! The thesis "Investigating Sparsity in Recurrent Neural Networks" as `pipe` plugins: the domain
//! code ([`data`], [`nn`], [`graph`], [`stats`], [`analysis`], [`report`]) and the thin plugins
//! that call it ([`stages`]), added to a registry by [`register`].

pub mod analysis;
pub mod data;
pub mod graph;
pub mod nn;
pub mod report;
pub mod stages;
pub mod stats;

pub use stages::register;
