//! Every pipeline-file error is reported with file:line:column and a hint, exits 2, and runs and
//! caches nothing.

use crate::common::{stderr, Sandbox};

/// Runs `pipe run` on `yaml`, asserts it was rejected without touching the cache, returns stderr.
fn rejected(yaml: &str) -> String {
    let sandbox = Sandbox::new();
    sandbox.write(yaml);
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "expected exit 2, stderr:\n{err}"
    );
    assert_eq!(sandbox.record_count(), 0, "nothing may be cached");
    assert!(!sandbox.artifacts().exists(), "nothing may be materialized");
    assert!(err.contains("nothing was run"), "{err}");
    err
}

#[test]
fn malformed_yaml() {
    let err = rejected("stages:\n  a:\n    uses: cmd\n    with: {run: 'x'\n  b: 1\n");
    assert!(err.contains("pipeline.yaml:"), "{err}");
}

#[test]
fn unknown_plugin_suggests_the_closest() {
    let err = rejected("stages:\n  a:\n    uses: cmdd\n    with: {run: 'true'}\n");
    assert!(
        err.contains("pipeline.yaml:3:11: unknown plugin `cmdd`"),
        "{err}"
    );
    assert!(err.contains("did you mean `cmd`?"), "{err}");
}

#[test]
fn unknown_parameter_suggests_the_closest() {
    let err =
        rejected("stages:\n  a:\n    uses: cmd\n    with:\n      rnu: 'true'\n      run: 'true'\n");
    assert!(
        err.contains("pipeline.yaml:5:7: unknown parameter `rnu`"),
        "{err}"
    );
    assert!(err.contains("did you mean `run`?"), "{err}");
}

#[test]
fn missing_parameter_is_named() {
    let err = rejected("stages:\n  a:\n    uses: cmd\n    with:\n      outputs: {}\n");
    assert!(
        err.contains("pipeline.yaml:3:5: missing parameter `run`"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_field_and_position() {
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    with:\n      run: 'true'\n      threads: many\n",
    );
    assert!(
        err.contains("pipeline.yaml:6:16: invalid parameter `threads`"),
        "{err}"
    );
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn input_naming_a_missing_stage_or_output() {
    let base = "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {x: x.txt}}\n  b:\n    uses: cmd\n    inputs: {i: ";
    let err = rejected(&format!("{base}aa.x}}\n    with: {{run: 'true'}}\n"));
    assert!(
        err.contains("pipeline.yaml:7:17: `aa.x` refers to stage `aa`, which does not exist"),
        "{err}"
    );
    assert!(err.contains("did you mean `a`?"), "{err}");
    let err = rejected(&format!("{base}a.y}}\n    with: {{run: 'true'}}\n"));
    assert!(err.contains("stage `a` has no output `y`"), "{err}");
    assert!(err.contains("did you mean `a.x`?"), "{err}");
}

#[test]
fn matrix_input_without_selector_or_with_unknown_value() {
    let base = "stages:\n  a:\n    uses: cmd\n    foreach: {v: [p, q]}\n    with: {run: 'true', outputs: {x: x.txt}}\n  b:\n    uses: cmd\n    inputs: {i: ";
    let err = rejected(&format!("{base}a.x}}\n    with: {{run: 'true'}}\n"));
    assert!(err.contains("stage `a` has 2 instances"), "{err}");
    let err = rejected(&format!("{base}'a[r].x'}}\n    with: {{run: 'true'}}\n"));
    assert!(err.contains("has no instance `[r]`"), "{err}");
    assert!(err.contains("a[p], a[q]"), "{err}");
}

#[test]
fn cycle_is_printed() {
    let yaml = "stages:\n  a:\n    uses: cmd\n    inputs: {i: b.y}\n    with: {run: 'true', outputs: {x: x.txt}}\n  b:\n    uses: cmd\n    inputs: {i: a.x}\n    with: {run: 'true', outputs: {y: y.txt}}\n";
    let err = rejected(yaml);
    assert!(
        err.contains("cycle: a → b → a") || err.contains("cycle: b → a → b"),
        "{err}"
    );
}

#[test]
fn duplicate_instances() {
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    foreach: {v: [p, p]}\n    with: {run: 'true'}\n",
    );
    assert!(
        err.contains("pipeline.yaml:4:5: duplicate instance `a[p]`"),
        "{err}"
    );
}

#[test]
fn unknown_variable_and_every_error_reported_at_once() {
    let yaml = "stages:\n  a:\n    uses: cmd\n    with: {run: 'echo ${vars.nope}'}\n  b:\n    uses: nope\n";
    let err = rejected(yaml);
    assert!(err.contains("unknown variable `${vars.nope}`"), "{err}");
    assert!(err.contains("unknown plugin `nope`"), "{err}");
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn unknown_top_level_key() {
    let err = rejected("sed: 1\nstages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n");
    assert!(err.contains("pipeline.yaml:1:1"), "{err}");
    assert!(err.contains("unknown field `sed`"), "{err}");
}
