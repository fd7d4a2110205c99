mod graph_oracle;
mod reber;
mod torch;
