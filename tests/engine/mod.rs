mod caching;
mod faults;
mod malformed;
mod mounts;
mod robustness;
mod slurm;
mod trust;
mod validation;
