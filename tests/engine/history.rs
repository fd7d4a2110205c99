//! Run history: every `pipe run` is recorded, newest first, and a killed run shows as interrupted.

use std::process::Stdio;
use std::time::Duration;

use crate::common::{kill9, stdout, wait_until, Sandbox};

fn run_lines(sandbox: &Sandbox, args: &[&str]) -> Vec<String> {
    let out = sandbox.cli(args);
    assert!(out.status.success());
    stdout(&out).lines().skip(1).map(String::from).collect()
}

#[test]
fn every_run_is_recorded_newest_first_and_a_killed_run_is_interrupted() {
    let sandbox = Sandbox::new();
    sandbox.write(crate::engine::caching::HELLO);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    assert!(sandbox
        .cli(&["run", "pipeline.yaml", "--dry-run"])
        .status
        .success());
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());

    let lines = run_lines(&sandbox, &["runs"]);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // run, date, time, seconds, state, ran, cached, failed, skipped, pipeline
    assert_eq!(
        &fields[0][4..9],
        ["ok", "0", "4", "0", "0"],
        "newest: all cached"
    );
    assert_eq!(fields[1][4], "dry-run");
    assert_eq!(
        &fields[2][4..9],
        ["ok", "4", "0", "0", "0"],
        "oldest: all ran"
    );
    assert!(fields[0][0] > fields[1][0] && fields[1][0] > fields[2][0]);

    let other = sandbox.path().join("other.yaml");
    std::fs::write(
        &other,
        "stages:\n  x:\n    uses: cmd\n    with: {run: 'true'}\n",
    )
    .unwrap();
    assert!(sandbox.cli(&["run", "other.yaml"]).status.success());
    assert_eq!(run_lines(&sandbox, &["runs", "pipeline.yaml"]).len(), 3);
    assert_eq!(run_lines(&sandbox, &["runs", "other.yaml"]).len(), 1);

    let record = std::fs::read_dir(sandbox.cache().join("runs"))
        .unwrap()
        .flatten()
        // The record itself, not its head (`<id>.head.json`, the record without instances).
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".head.json"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|t| t.contains("other.yaml"))
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    for field in [
        "user",
        "host",
        "pipeline_hash",
        "arguments",
        "started_at",
        "ended_at",
    ] {
        assert!(!record[field].is_null(), "{field} missing: {record}");
    }
    assert_eq!(record["instances"][0]["outcome"], "ran");
    assert!(record["instances"][0]["key"].is_string());

    sandbox.write(
        "stages:\n  slow:\n    uses: cmd\n    with: {run: 'touch \"$PIPE_PROJECT/started\"; sleep 30'}\n",
    );
    let mut child = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the slow run to start", Duration::from_secs(30), || {
        sandbox.path().join("started").exists()
    });
    let running = run_lines(&sandbox, &["runs"]);
    assert!(running[0].contains("running"), "{running:#?}");
    kill9(child.id());
    let _ = child.wait();
    let after = run_lines(&sandbox, &["runs"]);
    assert!(after[0].contains("interrupted"), "{after:#?}");
}

#[test]
fn diff_and_why_explain_an_edit_from_the_records() {
    let sandbox = Sandbox::new();
    let hello = crate::engine::caching::HELLO;
    sandbox.write(hello);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    let greeting = hello.replace("greeting: hello", "greeting: hi");
    sandbox.write(&greeting);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    let delta = greeting.replace("gamma", "delta");
    sandbox.write(&delta);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    assert_eq!(run_lines(&sandbox, &["runs"]).len(), 3);

    let diff = stdout(&sandbox.cli(&["diff"]));
    assert!(diff.contains("added: words[delta]"), "{diff}");
    assert!(diff.contains("removed: words[gamma]"), "{diff}");
    assert!(diff.contains("changed: joined"), "{diff}");
    assert!(diff.contains("input c: new bytes"), "{diff}");
    assert!(diff.contains("output all: changed"), "{diff}");

    let why = stdout(&sandbox.cli(&["why", "joined"]));
    assert!(why.contains("ran: its key changed"), "{why}");
    assert!(why.contains("input c: new bytes"), "{why}");
    assert!(!why.contains("input a:"), "only c changed: {why}");

    // The first edit changed a parameter of every `words` instance: `why` names it.
    let runs = run_lines(&sandbox, &["runs"]);
    let second: &str = runs[1].split_whitespace().next().unwrap();
    let why = stdout(&sandbox.cli(&["why", "words[alpha]", "--run", second]));
    assert!(why.contains("params.run:"), "{why}");
    let json = stdout(&sandbox.cli(&["diff", "--format", "json"]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["added"][0], "words[delta]");
}

#[test]
fn exp_show_tabulates_the_base_models_test_accuracy() {
    let sandbox = Sandbox::new();
    let ci = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/ci.yaml");
    assert!(sandbox.cli(&["run", ci]).status.success());
    let table = stdout(&sandbox.cli(&["exp", "show", ci]));
    let base: Vec<&str> = table
        .lines()
        .skip_while(|l| *l != "base")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(base[0].contains("test_acc"), "{table}");
    assert_eq!(base.len(), 5, "a header and four models: {table}");
    for variant in ["rnn_tanh", "rnn_relu", "lstm", "gru"] {
        assert!(base.iter().any(|l| l.contains(&format!("base[{variant}]"))));
    }
    let csv = stdout(&sandbox.cli(&["exp", "show", ci, "--format", "csv", "--sort", "test_acc"]));
    let rows: Vec<&str> = csv.lines().filter(|l| l.starts_with("base,")).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let accuracies: Vec<f64> = rows
        .iter()
        .map(|r| r.rsplit(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(accuracies.windows(2).all(|w| w[0] >= w[1]), "sorted: {csv}");
}

#[test]
fn exp_show_reads_a_run_from_its_record_alone() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "stages:\n  data:\n    uses: data.reber\n    foreach: {total: [200, 300]}\n    \
         with: {total: '${total}', test: {count: 50}}\n",
    );
    let file_arg = file.to_str().unwrap();
    assert!(sandbox.cli(&["run", file_arg]).status.success());
    // The second run reuses both instances: their metrics come from the cache's index.
    assert!(sandbox.cli(&["run", file_arg]).status.success());
    let show = || stdout(&sandbox.cli(&["exp", "show", file_arg, "--format", "csv"]));
    let table = show();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "stage,instance,total,invalid,mode_length,test,train,valid",
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with("data,data[200],200,") && lines[1].contains(",50,150,"));
    assert!(lines[2].starts_with("data,data[300],300,") && lines[2].contains(",50,250,"));

    // A run record of an older version, without the columns, is tabulated from the file and
    // the records as before.
    let runs = sandbox.cache().join("runs");
    let latest = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".head.json"))
        .max()
        .unwrap();
    let original = std::fs::read(&latest).unwrap();
    let mut record: serde_json::Value = serde_json::from_slice(&original).unwrap();
    record.as_object_mut().unwrap().remove("stages");
    for instance in record["instances"].as_array_mut().unwrap() {
        instance.as_object_mut().unwrap().remove("columns");
    }
    std::fs::write(&latest, serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(show(), table);

    // With the columns, neither the pipeline file nor the instances' records are read.
    std::fs::write(&latest, original).unwrap();
    std::fs::write(&file, "stages: [not a pipeline\n").unwrap();
    std::fs::remove_dir_all(sandbox.cache().join("records")).unwrap();
    assert_eq!(show(), table);
}

#[test]
fn set_overrides_rerun_exactly_what_they_reach_and_bad_ones_are_refused() {
    let sandbox = Sandbox::new();
    sandbox.write(crate::engine::caching::HELLO);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    let out = sandbox.cli(&["run", "pipeline.yaml", "-S", "joined.env.X=one"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("1 ran, 3 cached"), "{}", stdout(&out));
    let out = sandbox.cli(&["run", "pipeline.yaml", "-S", "vars.greeting=hey"]);
    assert!(stdout(&out).contains("4 ran, 0 cached"), "{}", stdout(&out));
    assert!(sandbox
        .read_artifact("joined/all.txt")
        .starts_with("hey alpha"));
    // `status` reports on the file alone, whose results the first run cached.
    let status = stdout(&sandbox.cli(&["status", "pipeline.yaml"]));
    assert!(status.contains("0 of 4 instances would run"), "{status}");

    for (set, expected) in [
        (
            "wrds.run=x",
            "in `-S wrds.run=x`: no stage `wrds`; did you mean `words`?",
        ),
        (
            "words.rnu=x",
            "in `-S words.rnu=x`: unknown parameter `rnu`",
        ),
        ("words[alpha].run=x", "names one instance"),
    ] {
        let out = sandbox.cli(&["run", "pipeline.yaml", "-S", set]);
        assert_eq!(out.status.code(), Some(2), "{set}");
        assert!(
            crate::common::stderr(&out).contains(expected),
            "{set}: {}",
            crate::common::stderr(&out)
        );
    }
}

#[test]
fn gc_keep_frees_superseded_results_and_keeps_what_the_pipeline_needs() {
    let sandbox = Sandbox::new();
    let hello = crate::engine::caching::HELLO;
    sandbox.write(hello);
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    sandbox.write(&hello.replace("greeting: hello", "greeting: hi"));
    assert!(sandbox.cli(&["run", "pipeline.yaml"]).status.success());
    assert_eq!(sandbox.record_count(), 8);

    let dry = stdout(&sandbox.cli(&["gc", "--keep", "pipeline.yaml", "--dry-run"]));
    assert!(
        dry.contains("would remove 4 objects") && dry.contains("4 records"),
        "{dry}"
    );
    assert_eq!(sandbox.record_count(), 8, "a dry run removes nothing");

    let with_last_two =
        stdout(&sandbox.cli(&["gc", "--keep", "pipeline.yaml", "--runs", "2", "--dry-run"]));
    assert!(
        with_last_two.contains("would remove 0 objects"),
        "{with_last_two}"
    );

    let gc = stdout(&sandbox.cli(&["gc", "--keep", "pipeline.yaml"]));
    assert!(
        gc.contains("removed 4 objects") && gc.contains("4 records"),
        "{gc}"
    );
    assert_eq!(sandbox.record_count(), 4);
    let again = stdout(&sandbox.cli(&["run", "pipeline.yaml"]));
    assert!(again.contains("0 ran, 4 cached"), "{again}");
    assert_eq!(sandbox.cli(&["verify"]).status.code(), Some(0));
}
