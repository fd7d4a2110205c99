//! Integration tests, one module per area (one test binary keeps builds fast).

mod common;
mod engine;
mod thesis;
