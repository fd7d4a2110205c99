//! What runs and what is reused: second runs, edits, early cutoff, matrices, fan-in, selection.

use crate::common::{sorted, stdout, Sandbox};

/// The engine issue's example, verbatim.
pub(crate) const HELLO: &str = r#"seed: 7
vars:
  greeting: hello
stages:
  words:
    uses: cmd
    foreach:
      word: [alpha, beta, gamma]
    with:
      run: 'echo "${vars.greeting} ${word}" > "$PIPE_OUT/word.txt"'
      outputs: {text: word.txt}
  joined:
    uses: cmd
    inputs:
      a: words[alpha].text
      b: words[beta].text
      c: words[gamma].text
    with:
      run: 'cat "$PIPE_IN_A" "$PIPE_IN_B" "$PIPE_IN_C" > "$PIPE_OUT/all.txt"'
      outputs: {all: all.txt}
"#;

#[test]
fn hello_example_runs_then_is_cached_then_reruns_exactly_the_edit() {
    let sandbox = Sandbox::new();
    let first = sandbox.run(HELLO);
    assert_eq!(
        sorted(first.ran()),
        ["joined", "words[alpha]", "words[beta]", "words[gamma]"]
    );
    assert_eq!(
        sandbox.read_artifact("joined/all.txt"),
        "hello alpha\nhello beta\nhello gamma\n"
    );
    assert_eq!(sandbox.read_artifact("words/beta/word.txt"), "hello beta\n");

    let second = sandbox.run(HELLO);
    assert!(
        second.ran().is_empty(),
        "second run executed {:?}",
        second.ran()
    );
    assert_eq!(second.cached().len(), 4);

    let edited = HELLO.replace("gamma", "delta");
    let third = sandbox.run(&edited);
    assert_eq!(sorted(third.ran()), ["joined", "words[delta]"]);
    assert_eq!(
        sandbox.read_artifact("joined/all.txt"),
        "hello alpha\nhello beta\nhello delta\n"
    );
}

#[test]
fn status_names_the_changed_parameter_and_input() {
    let sandbox = Sandbox::new();
    sandbox.run(HELLO);
    sandbox.write(&HELLO.replace("greeting: hello", "greeting: hi"));
    let status = stdout(&sandbox.cli(&["status", "pipeline.yaml"]));
    assert!(
        status.contains("words[alpha]  will run (params changed: run)"),
        "{status}"
    );
    assert!(
        status.contains("joined        will run if words[alpha], words[beta], words[gamma] change"),
        "{status}"
    );
    // Dry run says the same and runs nothing.
    let dry = stdout(&sandbox.cli(&["run", "--dry-run", "pipeline.yaml"]));
    assert!(dry.contains("4 of 4 instances would run"), "{dry}");
    assert_eq!(
        sandbox.read_artifact("words/alpha/word.txt"),
        "hello alpha\n"
    );
}

#[test]
fn editing_one_value_reruns_only_what_it_reaches() {
    let yaml = |n: u32| {
        format!(
            "vars: {{n: {n}}}\nstages:\n  a:\n    uses: cmd\n    with: {{run: 'echo ${{vars.n}} > $PIPE_OUT/a', outputs: {{a: a}}}}\n  b:\n    uses: cmd\n    with: {{run: 'echo b > $PIPE_OUT/b', outputs: {{b: b}}}}\n  c:\n    uses: cmd\n    inputs: {{x: a.a}}\n    with: {{run: 'cat $PIPE_IN_X > $PIPE_OUT/c', outputs: {{c: c}}}}\n  d:\n    uses: cmd\n    inputs: {{x: b.b}}\n    with: {{run: 'cat $PIPE_IN_X > $PIPE_OUT/d', outputs: {{d: d}}}}\n"
        )
    };
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run(&yaml(1)).ran().len(), 4);
    let edit = sandbox.run(&yaml(2));
    assert_eq!(sorted(edit.ran()), ["a", "c"]);
    assert_eq!(sorted(edit.cached()), ["b", "d"]);
    // Back to the old value: everything is still cached.
    assert!(sandbox.run(&yaml(1)).ran().is_empty());
    assert_eq!(sandbox.read_artifact("c/c"), "1\n");
}

#[test]
fn early_cutoff_keeps_dependents_cached_when_output_bytes_are_equal() {
    let yaml = |comment: &str| {
        format!(
            "stages:\n  up:\n    uses: cmd\n    with: {{run: 'echo same > $PIPE_OUT/o # {comment}', outputs: {{o: o}}}}\n  down:\n    uses: cmd\n    inputs: {{x: up.o}}\n    with: {{run: 'cat $PIPE_IN_X > $PIPE_OUT/d', outputs: {{d: d}}}}\n"
        )
    };
    let sandbox = Sandbox::new();
    sandbox.run(&yaml("v1"));
    let second = sandbox.run(&yaml("v2"));
    assert_eq!(second.ran(), ["up"]);
    assert_eq!(second.cached(), ["down"]);
    assert!(matches!(
        second.reports[1].outcome,
        pipe::Outcome::Cached { cutoff: true }
    ));
}

#[test]
fn matrix_is_a_cartesian_product_with_typed_interpolation() {
    let yaml = r#"
vars:
  sizes: [1, 2]
stages:
  grid:
    uses: cmd
    foreach:
      size: ${vars.sizes}
      mode: [x, y]
    with:
      run: 'echo "${size}-${mode}-${seed}" > $PIPE_OUT/v'
      threads: ${size}
      outputs: {v: v}
"#;
    let sandbox = Sandbox::new();
    let summary = sandbox.run(yaml);
    assert_eq!(
        summary.ran(),
        ["grid[1,x]", "grid[1,y]", "grid[2,x]", "grid[2,y]"]
    );
    assert_eq!(sandbox.read_artifact("grid/2-y/v"), "2-y-0\n");
    // `threads: ${size}` kept its integer type, or the plan would have been rejected.
    let plan = pipe::Plan::load(
        &pipe_thesis_torch::registry(),
        &sandbox.path().join("pipeline.yaml"),
    )
    .unwrap();
    assert_eq!(plan.instances[3].resolved.threads, 2);
}

#[test]
fn fan_in_gives_one_entry_per_instance() {
    let yaml = r#"
stages:
  part:
    uses: cmd
    foreach: {k: [a, b, c]}
    with: {run: 'echo ${k} > $PIPE_OUT/p.txt', outputs: {p: p.txt}}
  all:
    uses: cmd
    inputs: {parts: 'part[*].p'}
    with: {run: 'ls $PIPE_IN_PARTS > $PIPE_OUT/list; cat $PIPE_IN_PARTS/* > $PIPE_OUT/cat', outputs: {list: list, cat: cat}}
"#;
    let sandbox = Sandbox::new();
    sandbox.run(yaml);
    assert_eq!(sandbox.read_artifact("all/list"), "a\nb\nc\n");
    assert_eq!(sandbox.read_artifact("all/cat"), "a\nb\nc\n");
}

#[test]
fn directory_outputs_are_stored_and_materialized() {
    let yaml = "stages:\n  d:\n    uses: cmd\n    with: {run: 'mkdir -p $PIPE_OUT/tree/sub && echo 1 > $PIPE_OUT/tree/sub/one', outputs: {tree: tree}}\n  u:\n    uses: cmd\n    inputs: {t: d.tree}\n    with: {run: 'cat $PIPE_IN_T/sub/one > $PIPE_OUT/o', outputs: {o: o}}\n";
    let sandbox = Sandbox::new();
    sandbox.run(yaml);
    assert_eq!(sandbox.read_artifact("d/tree/sub/one"), "1\n");
    assert_eq!(sandbox.read_artifact("u/o"), "1\n");
    assert!(sandbox.run(yaml).ran().is_empty());
}

#[test]
fn failure_skips_only_dependents() {
    let yaml = "stages:\n  bad:\n    uses: cmd\n    with: {run: 'echo oops >&2; exit 3', outputs: {o: o}}\n  after:\n    uses: cmd\n    inputs: {x: bad.o}\n    with: {run: 'true', outputs: {}}\n  fine:\n    uses: cmd\n    with: {run: 'echo ok > $PIPE_OUT/o', outputs: {o: o}}\n";
    let sandbox = Sandbox::new();
    sandbox.write(yaml);
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED  bad: command exited with 3"), "{out}");
    assert!(out.contains("oops"), "the log tail is shown: {out}");
    assert!(
        out.contains("skipped after (`bad` did not finish)"),
        "{out}"
    );
    assert!(
        out.contains("1 ran, 0 cached, 1 failed, 1 skipped"),
        "{out}"
    );
    assert_eq!(sandbox.read_artifact("fine/o"), "ok\n");
}

#[test]
fn missing_declared_output_fails_the_instance() {
    let yaml = "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', outputs: {o: nope.txt}}\n";
    let sandbox = Sandbox::new();
    let summary = sandbox.run(yaml);
    assert_eq!(summary.failed(), ["a"]);
    assert_eq!(sandbox.record_count(), 0);
}

#[test]
fn only_and_force_select_instances() {
    let sandbox = Sandbox::new();
    let only = sandbox.run_with(HELLO, |o| o.only = vec!["words[beta]".into()]);
    assert_eq!(only.ran(), ["words[beta]"]);
    let forced = sandbox.run_with(HELLO, |o| o.force = vec!["words".into()]);
    assert_eq!(
        sorted(forced.ran()),
        ["joined", "words[alpha]", "words[beta]", "words[gamma]"]
    );
    // Forced words produce the same bytes, so joined (new, from the first full run) is the only
    // dependent that ran; a second forced run cuts off at joined.
    let again = sandbox.run_with(HELLO, |o| o.force = vec!["words".into()]);
    assert_eq!(again.cached(), ["joined"]);
}

#[test]
fn cli_dag_formats() {
    let sandbox = Sandbox::new();
    sandbox.write(HELLO);
    let dot = stdout(&sandbox.cli(&["dag", "pipeline.yaml", "--format", "dot"]));
    assert!(
        dot.contains("\"words[alpha]\" -> \"joined\" [label=\"a\"]"),
        "{dot}"
    );
    let mermaid = stdout(&sandbox.cli(&["dag", "pipeline.yaml", "--format", "mermaid"]));
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    let text = stdout(&sandbox.cli(&["dag", "pipeline.yaml"]));
    assert!(
        text.contains("joined  (cmd)\n  ← words[alpha] as a"),
        "{text}"
    );
}

#[test]
fn cmd_instances_that_differ_only_in_their_name_each_run() {
    // The command can read `$PIPE_INSTANCE`, so the name is part of its key.
    let yaml = "stages:\n  same:\n    uses: cmd\n    foreach: {k: [a, b, c]}\n    with: {run: 'echo same > $PIPE_OUT/o', outputs: {o: o}}\n";
    let sandbox = Sandbox::new();
    let summary = sandbox.run_with(yaml, |o| o.jobs = 3);
    assert!(summary.success(), "{:?}", summary.reports);
    assert_eq!(summary.ran().len(), 3, "{:?}", summary.reports);
}

#[test]
fn built_in_instances_with_identical_keys_run_once_and_share_the_result() {
    // `data.table` cannot observe its instance name: three equal instances are one key.
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path().join("t.csv"), "a,b\n1,2\n").unwrap();
    let yaml = "stages:\n  same:\n    uses: data.table\n    foreach: {k: [a, b, c]}\n    with: {file: t.csv}\n";
    let summary = sandbox.run_with(yaml, |o| o.jobs = 3);
    assert!(summary.success(), "{:?}", summary.reports);
    assert_eq!(summary.ran().len(), 1, "{:?}", summary.reports);
    assert_eq!(summary.cached().len(), 2);
    assert!(sandbox.artifacts().join("same/c").is_dir());
}

/// A matrix over `seed` repeats a stage with each seed: every instance gets its own seed (in
/// `$PIPE_SEED`, `${seed}` and its key), and a seed that is not a whole number is a pipeline error.
#[test]
fn a_matrix_over_seed_gives_each_instance_its_seed() {
    let yaml = r#"seed: 7
stages:
  draw:
    uses: cmd
    foreach: {seed: [0, 3], word: [a]}
    with:
      run: 'echo "$PIPE_SEED ${seed} ${word}" > "$PIPE_OUT/seed.txt"'
      outputs: {seed: seed.txt}
  plain:
    uses: cmd
    with:
      run: 'echo "$PIPE_SEED" > "$PIPE_OUT/seed.txt"'
      outputs: {seed: seed.txt}
"#;
    let sandbox = Sandbox::new();
    let summary = sandbox.run(yaml);
    assert_eq!(
        sorted(summary.ran()),
        ["draw[0,a]", "draw[3,a]", "plain"],
        "{:?}",
        summary.reports
    );
    assert_eq!(sandbox.read_artifact("draw/0-a/seed.txt"), "0 0 a\n");
    assert_eq!(sandbox.read_artifact("draw/3-a/seed.txt"), "3 3 a\n");
    assert_eq!(sandbox.read_artifact("plain/seed.txt"), "7\n");

    sandbox.write(&yaml.replace("[0, 3]", "[0, x]"));
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let message = crate::common::stderr(&output);
    assert!(
        message.contains("`foreach.seed` of stage `draw` must list whole numbers"),
        "{message}"
    );
}
