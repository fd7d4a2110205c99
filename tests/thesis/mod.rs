mod graph_oracle;
mod nn_equivalence;
mod reber;
mod torch;
mod train;
