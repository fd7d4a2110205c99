//! The registry is a value: a test registers a plugin of its own and watches the engine use it,
//! without libtorch or any thesis plugin.

use std::sync::atomic::{AtomicUsize, Ordering};

use pipe_engine::spec::SourceFile;
use pipe_engine::stage::{OutputDecl, Plugin, StageContext, StageError};
use pipe_engine::{Plan, Registry, RunOptions, Store};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Writes its `text` parameter and counts how often it ran.
struct Counting;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountingParams {
    text: String,
}

impl Plugin for Counting {
    type Params = CountingParams;
    const KIND: &'static str = "test.count";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "counts its runs";

    fn outputs(&self, _params: &CountingParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("text", "text.txt")]
    }

    fn run(&self, params: CountingParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        std::fs::write(ctx.output("text.txt"), params.text)
            .map_err(|e| StageError::io("cannot write", e))
    }
}

fn run(registry: &Registry, dir: &std::path::Path, yaml: &str) -> usize {
    let source = SourceFile::parse(&dir.join("p.yaml"), yaml).expect("parse");
    let plan = Plan::from_source(registry, source).expect("plan");
    let store = Store::open(&dir.join("cache")).expect("store");
    let options = RunOptions {
        jobs: 2,
        force: Vec::new(),
        only: Vec::new(),
        artifacts: dir.join("artifacts"),
    };
    let before = RUNS.load(Ordering::SeqCst);
    let summary = pipe_engine::run(&plan, &store, &options, &|_| {}).expect("run");
    assert!(summary.success());
    RUNS.load(Ordering::SeqCst) - before
}

#[test]
fn a_registered_plugin_runs_once_then_is_reused_until_its_params_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::with_cmd();
    registry.register(Counting);
    let yaml =
        |text: &str| format!("stages:\n  a:\n    uses: test.count\n    with: {{text: {text}}}\n");
    assert_eq!(run(&registry, dir.path(), &yaml("one")), 1);
    assert_eq!(
        run(&registry, dir.path(), &yaml("one")),
        0,
        "a hit must not run the plugin"
    );
    assert_eq!(run(&registry, dir.path(), &yaml("two")), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("artifacts/a/text.txt")).unwrap(),
        "two"
    );
}

#[test]
fn a_plugin_missing_from_the_registry_is_a_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "stages:\n  a:\n    uses: test.count\n    with: {text: x}\n";
    let source = SourceFile::parse(&dir.path().join("p.yaml"), yaml).expect("parse");
    let Err(errors) = Plan::from_source(&Registry::with_cmd(), source) else {
        panic!("planned with an unknown plugin");
    };
    assert!(
        errors.to_string().contains("unknown plugin `test.count`"),
        "{errors}"
    );
}
