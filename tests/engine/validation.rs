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

#[test]
fn duplicate_stage_is_rejected_naming_the_first() {
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n  a:\n    uses: cmd\n    with: {run: 'false'}\n",
    );
    assert!(
        err.contains(
            "pipeline.yaml:5:3: duplicate key `a` in `stages` (the first is at line 2, column 3)"
        ),
        "{err}"
    );
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn duplicate_var_foreach_key_and_input_are_rejected() {
    let err = rejected(
        "vars:\n  x: 1\n  x: 2\nstages:\n  a:\n    uses: cmd\n    with: {run: 'echo ${vars.x}'}\n",
    );
    assert!(
        err.contains("pipeline.yaml:3:3: duplicate key `x` in `vars` (the first is at line 2"),
        "{err}"
    );
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    foreach:\n      v: [p, q]\n      v: [r]\n    with: {run: 'true'}\n",
    );
    assert!(
        err.contains(
            "pipeline.yaml:6:7: duplicate key `v` in `stages.a.foreach` (the first is at line 5"
        ),
        "{err}"
    );
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {x: x.txt, y: y.txt}}\n  b:\n    uses: cmd\n    inputs: {i: a.x, i: a.y}\n    with: {run: 'true'}\n",
    );
    assert!(
        err.contains("pipeline.yaml:7:22: duplicate key `i` in `stages.b.inputs` (the first is at line 7, column 14)"),
        "{err}"
    );
}

#[test]
fn input_names_differing_only_in_case_are_rejected() {
    let err = rejected(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {x: x.txt, y: y.txt}}\n  b:\n    uses: cmd\n    inputs: {x: a.x, X: a.y}\n    with: {run: 'true'}\n",
    );
    assert!(err.contains("pipeline.yaml:7:22:"), "{err}");
    assert!(err.contains("`x` and `X`"), "{err}");
    assert!(err.contains("PIPE_IN_X"), "{err}");
}

#[test]
fn zero_threads_and_zero_jobs_are_rejected() {
    let err = rejected("stages:\n  a:\n    uses: cmd\n    with: {run: 'true', threads: 0}\n");
    assert!(
        err.contains(
            "pipeline.yaml:4:34: invalid parameter `threads` for plugin `cmd` in stage `a`"
        ),
        "{err}"
    );
    assert!(err.contains("at least 1"), "{err}");
    let err =
        rejected("settings:\n  jobs: 0\nstages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n");
    assert!(
        err.contains("pipeline.yaml:2:9: `settings.jobs` must be at least 1"),
        "{err}"
    );
}

#[test]
fn zero_jobs_on_the_command_line_is_a_usage_error() {
    let sandbox = Sandbox::new();
    sandbox.write("stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {o: o}}\n");
    let output = sandbox.cli(&["run", "--jobs", "0", "pipeline.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("--jobs"), "{err}");
    assert_eq!(sandbox.record_count(), 0, "nothing may be cached");
}

#[test]
fn cmd_env_may_not_set_pipe_variables_or_bad_names() {
    let base = "stages:\n  a:\n    uses: cmd\n    with:\n      run: 'true'\n      env: ";
    let err = rejected(&format!("{base}{{PIPE_OUT: /tmp}}\n"));
    assert!(err.contains("pipeline.yaml:6:"), "{err}");
    assert!(err.contains("`PIPE_OUT`"), "{err}");
    assert!(err.contains("reserved"), "{err}");
    let err = rejected(&format!("{base}{{MY-VAR: x}}\n"));
    assert!(err.contains("pipeline.yaml:6:"), "{err}");
    assert!(
        err.contains("`MY-VAR` is not a valid environment variable name"),
        "{err}"
    );
    let err = rejected(&format!("{base}{{1X: x}}\n"));
    assert!(
        err.contains("`1X` is not a valid environment variable name"),
        "{err}"
    );
}

#[test]
fn cmd_outputs_may_not_overlap_or_be_pipe_out_itself() {
    let base = "stages:\n  a:\n    uses: cmd\n    with:\n      run: 'true'\n      outputs: ";
    let err = rejected(&format!("{base}{{o: o, p: o}}\n"));
    assert!(err.contains("pipeline.yaml:6:"), "{err}");
    assert!(err.contains("outputs `o` and `p`"), "{err}");
    let err = rejected(&format!("{base}{{o: o, p: ./o/}}\n"));
    assert!(err.contains("outputs `o` and `p`"), "{err}");
    let err = rejected(&format!("{base}{{d: d, f: d/f}}\n"));
    assert!(
        err.contains("`d/f` (output `f`) is inside `d` (output `d`)"),
        "{err}"
    );
    for itself in [".", "./", "a/..", "''"] {
        let err = rejected(&format!("{base}{{o: {itself}}}\n"));
        assert!(err.contains("pipeline.yaml:6:"), "{itself}: {err}");
        assert!(err.contains("outputs.o"), "{itself}: {err}");
    }
    let err = rejected(&format!("{base}{{o: .}}\n"));
    assert!(err.contains("is $PIPE_OUT itself"), "{err}");
}

#[test]
fn cmd_files_must_be_inside_the_project() {
    let base = "stages:\n  a:\n    uses: cmd\n    with:\n      run: 'true'\n      files: ";
    for outside in ["[/etc/hostname]", "[../x.sh]", "[a/../../x.sh]"] {
        let err = rejected(&format!("{base}{outside}\n"));
        assert!(err.contains("pipeline.yaml:6:"), "{outside}: {err}");
        assert!(
            err.contains("files must be inside the pipeline's directory"),
            "{outside}: {err}"
        );
        assert!(err.contains("copy"), "{outside}: {err}");
    }
}

#[test]
fn non_utf8_file_names_the_first_bad_byte() {
    let sandbox = Sandbox::new();
    std::fs::write(
        sandbox.path().join("pipeline.yaml"),
        b"stages:\n  a:\n    uses: cmd\n    with: {run: 'echo \xff'}\n",
    )
    .expect("write");
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipeline.yaml:4:23: the pipeline file is not valid UTF-8"),
        "{err}"
    );
    assert!(err.contains("help:"), "{err}");
    assert_eq!(sandbox.record_count(), 0);
}

#[test]
fn a_nan_clip_is_rejected_by_every_training_plugin() {
    for (plugin, with) in [
        ("rnn.train", "variant: gru, clip: .nan"),
        ("rnn.prune", "clip: .nan"),
        ("rnn.train_random", "variant: gru, clip: .nan"),
    ] {
        let err = rejected(&format!(
            "stages:\n  t:\n    uses: {plugin}\n    with: {{{with}}}\n"
        ));
        assert!(err.contains("parameter `clip`"), "{plugin}: {err}");
    }
}
