mod caching;
mod robustness;
mod validation;
