mod analysis;
mod graph_oracle;
mod nn_equivalence;
mod reber;
mod stats_reference;
mod stats_thesis;
mod torch;
mod train;
