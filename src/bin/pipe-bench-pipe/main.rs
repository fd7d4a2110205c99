//! `pipe-bench-pipe`: `pipe` plus `bench.value`, the instance of `pipe-bench scale`, and that
//! benchmark's driver ([`scale`], run when `PIPE_BENCH_SCALE` names a scratch directory), which
//! times this binary as `pipe`: same start-up, same allocator, no libtorch.

mod scale;

use pipe::stage::{InputSpec, OutputDecl, Plugin, StageContext, StageError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The allocator of `pipe` itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes its `value` (and a one-number metric): the cheapest instance that still stores an output.
struct Value;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ValueParams {
    value: String,
}

impl Plugin for Value {
    type Params = ValueParams;
    const KIND: &'static str = "bench.value";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Write a value to v.txt (the scale benchmark's instance)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }
    fn outputs(&self, _params: &ValueParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("v", "v.txt")]
    }
    fn run(&self, params: ValueParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let length = params.value.len();
        std::fs::write(ctx.output("v.txt"), params.value)
            .map_err(|e| StageError::io("cannot write v.txt", e))?;
        ctx.set_metrics(serde_json::json!({ "length": length }));
        Ok(())
    }
}

/// `pipe`'s registry plus `bench.value`.
fn registry() -> pipe::Registry {
    let mut registry = pipe::registry();
    registry.register(Value);
    registry
}

fn main() {
    if let Some(scratch) = std::env::var_os(scale::DRIVER) {
        if let Err(e) = scale::run(std::path::Path::new(&scratch)) {
            eprintln!("pipe-bench scale: {e:#}");
            pipe::cli::exit(1);
        }
        pipe::cli::exit(0);
    }
    pipe::cli::exit(pipe::cli::main_with(registry()));
}
