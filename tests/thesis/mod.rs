mod graph_oracle;
mod reber;
