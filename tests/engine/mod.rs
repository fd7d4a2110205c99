mod caching;
mod robustness;
mod validation;
mod slurm;
