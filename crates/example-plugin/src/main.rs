//! `pipe` with one stage of our own, `example.upper`: the whole of what a user writes to add a
//! Rust stage without forking `pipe`. The plugin parses its parameters, reads its input, writes
//! its output; the engine does the rest (keys, cache, parallelism, resume).

use pipe::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Upper-cases a text file, optionally repeating it.
struct Upper;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpperParams {
    /// How many times to repeat the text.
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

impl Plugin for Upper {
    type Params = UpperParams;
    const KIND: &'static str = "example.upper";
    // Bump whenever the same parameters and input would give different bytes.
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Upper-case a text file (an example of a plugin of your own)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![InputDecl {
            name: "text",
            fan_in: false,
            required: true,
            about: "a text file",
        }])
    }

    fn outputs(&self, _params: &UpperParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("text", "upper.txt")]
    }

    fn run(&self, params: UpperParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let text = std::fs::read_to_string(ctx.input("text")?)
            .map_err(|e| StageError::io("cannot read the input", e))?;
        std::fs::write(
            ctx.output("upper.txt"),
            text.to_uppercase().repeat(params.times),
        )
        .map_err(|e| StageError::io("cannot write upper.txt", e))
    }
}

fn main() {
    let mut registry = pipe::registry();
    registry.register(Upper);
    pipe::cli::exit(pipe::cli::main_with(registry));
}
