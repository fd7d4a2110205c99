//! The thesis "Investigating Sparsity in Recurrent Neural Networks" as `pipe` plugins: the domain
//! code that needs no libtorch ([`data`], [`graph`], [`stats`], [`analysis`], [`report`], and the
//! recurrent models as configuration, [`model`]) and the thin plugins ([`stages`]), added to a
//! registry by [`register`]. The neural networks themselves are `pipe-thesis-torch`'s.

pub mod analysis;
pub mod data;
pub mod graph;
pub mod model;
pub mod report;
pub mod stages;
pub mod stats;

pub use stages::register;
