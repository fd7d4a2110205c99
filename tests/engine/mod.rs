mod caching;
mod malformed;
mod robustness;
mod slurm;
mod trust;
mod validation;
