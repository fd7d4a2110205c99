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

/// Copies the timings table the engine hands it into its output.
struct Timed;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TimedParams {}

impl Plugin for Timed {
    type Params = TimedParams;
    const KIND: &'static str = "test.timed";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "copies its upstream timings";

    fn outputs(&self, _params: &TimedParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("table", "timings.csv")]
    }

    fn timings(&self, _params: &TimedParams) -> bool {
        true
    }

    fn run(&self, _params: TimedParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        std::fs::copy(ctx.input("timings")?, ctx.output("timings.csv"))
            .map_err(|e| StageError::io("cannot copy", e))?;
        Ok(())
    }
}

#[test]
fn a_plugin_that_asks_for_timings_gets_every_upstream_instance_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::with_cmd();
    registry.register(Timed);
    // `late` depends on `early` only through `mid`: timings are transitive.
    // Once the marker exists, `early` takes 0.3 s longer: its forced re-run has another time.
    let marker = dir.path().join("slower");
    let yaml = format!("stages:\n  early:\n    uses: cmd\n    with: {{run: 'sleep 0.2; [ -e {} ] && sleep 0.3; echo a > \"$PIPE_OUT/o\"', outputs: {{o: o}}}}\n  mid:\n    uses: cmd\n    inputs: {{x: early.o}}\n    with: {{run: 'cp \"$PIPE_IN_X\" \"$PIPE_OUT/o\"', outputs: {{o: o}}}}\n  late:\n    uses: test.timed\n    needs: [mid]\n", marker.display());
    let source = SourceFile::parse(&dir.path().join("p.yaml"), &yaml).expect("parse");
    let plan = Plan::from_source(&registry, source).expect("plan");
    let store = Store::open(&dir.path().join("cache")).expect("store");
    let mut options = RunOptions {
        jobs: 2,
        force: Vec::new(),
        only: Vec::new(),
        artifacts: dir.path().join("artifacts"),
    };
    let table = || std::fs::read_to_string(dir.path().join("artifacts/late/timings.csv")).unwrap();
    assert!(pipe_engine::run(&plan, &store, &options, &|_| {})
        .expect("run")
        .success());
    let first = table();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[0], "stage,instance,seconds");
    assert!(lines[1].starts_with("\"early\",\"early\","), "{first}");
    let early: f64 = lines[1].rsplit(',').next().unwrap().parse().unwrap();
    assert!(early >= 0.2, "early slept 0.2 s: {first}");
    assert!(lines[2].starts_with("\"mid\",\"mid\","), "{first}");
    assert_eq!(lines.len(), 3);

    // Reused, the table is the same: the seconds come from the records, not from this run.
    let again = pipe_engine::run(&plan, &store, &options, &|_| {}).expect("run");
    assert_eq!(again.ran().len(), 0);
    assert_eq!(table(), first);

    // `early` re-runs with the same bytes: `mid` is cut off, but `late` sees a new time and
    // re-runs, because the table is part of its key.
    std::fs::write(&marker, "").unwrap();
    options.force = vec!["early".into()];
    let forced = pipe_engine::run(&plan, &store, &options, &|_| {}).expect("run");
    assert_eq!(forced.ran(), vec!["early", "late"]);
    assert_ne!(table(), first);
}

#[test]
fn instances_that_share_a_key_compute_once_even_when_decided_in_different_chunks() {
    // 1,150 instances, decided 1,024 at a time; the 100 of stage `b` have the parameters (so the
    // keys) of the first 100 of `a`, which the first chunk queued: they wait for those and are
    // then reused.
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::with_cmd();
    registry.register(Counting);
    let values = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let yaml = format!(
        "stages:\n  a:\n    uses: test.count\n    foreach: {{v: [{}]}}\n    with: {{text: '${{v}}'}}\n  b:\n    uses: test.count\n    foreach: {{v: [{}]}}\n    with: {{text: '${{v}}'}}\n",
        values(1050),
        values(100)
    );
    let source = SourceFile::parse(&dir.path().join("p.yaml"), &yaml).expect("parse");
    let plan = Plan::from_source(&registry, source).expect("plan");
    let store = Store::open(&dir.path().join("cache")).expect("store");
    let options = RunOptions {
        jobs: 2,
        force: Vec::new(),
        only: Vec::new(),
        artifacts: dir.path().join("artifacts"),
    };
    let summary = pipe_engine::run(&plan, &store, &options, &|_| {}).expect("run");
    assert!(summary.success());
    assert_eq!(summary.ran().len(), 1050);
    assert_eq!(summary.cached().len(), 100);
    assert_eq!(summary.reports.len(), 1150, "every instance has an outcome");
}
