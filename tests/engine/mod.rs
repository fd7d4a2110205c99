mod caching;
mod robustness;
mod slurm;
mod validation;
