mod graph_oracle;
mod nn_equivalence;
mod prune;
mod reber;
mod torch;
mod train;
