mod graph_oracle;
mod nn_equivalence;
mod reber;
mod structure;
mod torch;
mod train;
