//! The trust cases: outputs never reach outside `$PIPE_OUT`, every observable value is in the key,
//! labels never collide, and leftovers of a killed run never mix into a re-run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{alive, finished, kill9, ran, reused, stderr, wait_until, Sandbox};

fn one_cmd(run: &str, outputs: &str) -> String {
    format!(
        "stages:\n  a:\n    uses: cmd\n    with:\n      run: '{run}'\n      outputs: {outputs}\n"
    )
}

#[test]
fn a_symlinked_output_directory_is_refused_and_its_target_left_untouched() {
    let sandbox = Sandbox::new();
    let outside = sandbox.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("thesis.tex"), "chapter 1").unwrap();
    let yaml = one_cmd(
        &format!("ln -s {} \"$PIPE_OUT/d\"", outside.display()),
        "{d: d}",
    );
    let summary = sandbox.run(&yaml);
    assert_eq!(summary.failed(), vec!["a"]);
    let pipe::Outcome::Failed { error, .. } = &summary.reports[0].outcome else {
        panic!("expected a failure");
    };
    assert!(error.contains("symbolic link"), "{error}");
    assert_eq!(
        fs::read_to_string(outside.join("thesis.tex")).unwrap(),
        "chapter 1"
    );
}

#[test]
fn symlinks_to_files_relative_or_absolute_are_refused_and_targets_keep_their_mode() {
    let sandbox = Sandbox::new();
    let outside = sandbox.path().join("notes.txt");
    fs::write(&outside, "mine").unwrap();
    for target in [outside.display().to_string(), "../../x".to_string()] {
        let summary = sandbox.run(&one_cmd(
            &format!("ln -s {target} \"$PIPE_OUT/o\""),
            "{o: o}",
        ));
        assert_eq!(summary.failed(), vec!["a"], "link to {target}");
    }
    let mode = fs::metadata(&outside).unwrap().permissions().mode();
    assert_ne!(mode & 0o200, 0, "the outside file was made read-only");
}

#[test]
fn a_fifo_output_fails_at_once_instead_of_blocking() {
    let sandbox = Sandbox::new();
    sandbox.write(&one_cmd("mkfifo \"$PIPE_OUT/o\"", "{o: o}"));
    let mut child = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until("pipe to finish", Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(1));
}

#[test]
fn matrix_values_seen_only_through_pipe_instance_are_in_the_key() {
    let sandbox = Sandbox::new();
    let yaml = "stages:\n  a:\n    uses: cmd\n    foreach: {x: [p, q, r]}\n    with: {run: 'echo \"$PIPE_INSTANCE\" > \"$PIPE_OUT/o.txt\"', outputs: {o: o.txt}}\n";
    let (_, events) = sandbox.run_recorded(yaml);
    assert_eq!(finished(&events, ran), vec!["a[p]", "a[q]", "a[r]"]);
    for x in ["p", "q", "r"] {
        assert_eq!(
            sandbox.read_artifact(&format!("a/{x}/o.txt")),
            format!("a[{x}]\n")
        );
    }
    let (_, again) = sandbox.run_recorded(yaml);
    assert_eq!(finished(&again, reused).len(), 3);
}

#[test]
fn labels_never_collide_and_a_fan_in_receives_every_instance() {
    let sandbox = Sandbox::new();
    let yaml = r#"
stages:
  a:
    uses: cmd
    foreach: {x: [x, x-y], y: [y-z, z]}
    with: {run: 'echo "$PIPE_INSTANCE" > "$PIPE_OUT/o"', outputs: {o: o}}
  b:
    uses: cmd
    foreach: {v: ["é", "ü", "a/b", "a_b", "a b", "a*b"]}
    with: {run: 'echo "$PIPE_INSTANCE" > "$PIPE_OUT/o"', outputs: {o: o}}
  all:
    uses: cmd
    inputs: {a: 'a[*].o', b: 'b[*].o'}
    with:
      run: 'ls "$PIPE_IN_A" | wc -l > "$PIPE_OUT/n"; ls "$PIPE_IN_B" | wc -l >> "$PIPE_OUT/n"; cat "$PIPE_IN_A"/* "$PIPE_IN_B"/* | sort > "$PIPE_OUT/all"'
      outputs: {n: n, all: all}
"#;
    let summary = sandbox.run(yaml);
    assert!(summary.success(), "{:?}", summary.reports);
    assert_eq!(sandbox.read_artifact("all/n"), "4\n6\n");
    let all = sandbox.read_artifact("all/all");
    for name in ["a[x,y-z]", "a[x-y,z]", "b[é]", "b[a/b]", "b[a_b]", "b[a*b]"] {
        assert!(
            all.contains(&format!("{name}\n")),
            "{name} missing from {all}"
        );
    }
    let a_dirs = fs::read_dir(sandbox.artifacts().join("a")).unwrap().count();
    assert_eq!(a_dirs, 4);
}

#[test]
fn dot_and_dotdot_values_stay_inside_their_stage_and_empty_values_are_rejected() {
    let sandbox = Sandbox::new();
    let yaml = r#"
stages:
  a:
    uses: cmd
    foreach: {v: ["..", "."]}
    with: {run: 'echo from-a > "$PIPE_OUT/o.txt"', outputs: {o: o.txt}}
  b:
    uses: cmd
    with: {run: 'echo from-b > "$PIPE_OUT/o.txt"', outputs: {o: o.txt}}
"#;
    assert!(sandbox.run(yaml).success());
    assert_eq!(sandbox.read_artifact("b/o.txt"), "from-b\n");
    assert!(!sandbox.artifacts().join("o.txt").exists());

    sandbox
        .write("stages:\n  a:\n    uses: cmd\n    foreach: {v: ['']}\n    with: {run: 'true'}\n");
    let out = sandbox.cli(&["dag", "pipeline.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pipeline.yaml:4:") && stderr(&out).contains("must not be empty"),
        "{}",
        stderr(&out)
    );
}

/// A command that notes its pid, then writes its output in two steps with a pause between.
const SLOW_TWO_STEPS: &str = r#"
stages:
  a:
    uses: cmd
    with:
      run: 'echo $$ >> "$PIPE_PROJECT/pids"; echo "start $$" > "$PIPE_OUT/o"; sleep 1.5; echo "end $$" >> "$PIPE_OUT/o"'
      outputs: {o: o}
"#;

#[test]
fn after_kill_9_the_command_dies_too_and_the_rerun_output_is_one_execution() {
    let sandbox = Sandbox::new();
    sandbox.write(SLOW_TWO_STEPS);
    let pids = sandbox.path().join("pids");
    let mut child = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the command to start", Duration::from_secs(30), || {
        fs::read_to_string(&pids).is_ok_and(|p| p.ends_with('\n'))
    });
    kill9(child.id());
    let _ = child.wait();
    let orphan: i32 = fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    wait_until(
        "the orphaned command to be killed",
        Duration::from_secs(5),
        || !alive(orphan),
    );

    let (summary, events) = sandbox.run_recorded(SLOW_TWO_STEPS);
    assert!(summary.success());
    assert_eq!(finished(&events, ran), vec!["a"]);
    let text = sandbox.read_artifact("a/o");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].replace("start", "end"), lines[1], "{text}");
    let staging: Vec<_> = fs::read_dir(sandbox.cache().join("staging"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
}

#[test]
fn a_deleted_lock_file_does_not_let_two_runs_execute_one_key() {
    let sandbox = Sandbox::new();
    let yaml = r#"
stages:
  a:
    uses: cmd
    with:
      run: 'echo begin >> "$PIPE_PROJECT/trace"; sleep 1; echo end >> "$PIPE_PROJECT/trace"; echo x > "$PIPE_OUT/o"'
      outputs: {o: o}
"#;
    sandbox.write(yaml);
    let trace = sandbox.path().join("trace");
    let mut first = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first run to start", Duration::from_secs(30), || {
        trace.exists()
    });
    fs::remove_file(sandbox.cache().join("lock")).unwrap();
    let second = sandbox.cli(&["run", "pipeline.yaml"]);
    assert!(first.wait().unwrap().success());
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(fs::read_to_string(&trace).unwrap(), "begin\nend\n");
}

#[test]
fn a_truncated_record_is_damage_for_verify_and_status() {
    let sandbox = Sandbox::new();
    let yaml = one_cmd("echo hi > \"$PIPE_OUT/o\"", "{o: o}");
    assert!(sandbox.run(&yaml).success());
    let record = fs::read_dir(sandbox.cache().join("records"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let text = fs::read_to_string(&record).unwrap();
    fs::write(&record, &text[..text.len() / 2]).unwrap();

    let status = sandbox.cli(&["status", "pipeline.yaml"]);
    let said = crate::common::stdout(&status);
    assert!(said.contains("record damaged"), "{said}");

    let verify = sandbox.cli(&["verify"]);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}",
        crate::common::stdout(&verify)
    );
    assert!(crate::common::stdout(&verify).contains("1 damaged"));
    let (_, events) = sandbox.run_recorded(&yaml);
    assert_eq!(finished(&events, ran), vec!["a"]);
    assert_eq!(sandbox.cli(&["verify"]).status.code(), Some(0));
}

#[test]
fn a_command_that_leaves_a_background_job_does_not_write_after_it_is_stored() {
    let sandbox = Sandbox::new();
    let yaml = one_cmd(
        "echo done > \"$PIPE_OUT/o\"; (sleep 0.5; echo late >> \"$PIPE_OUT/o\"; touch \"$PIPE_PROJECT/late\") &",
        "{o: o}",
    );
    assert!(sandbox.run(&yaml).success());
    std::thread::sleep(Duration::from_secs(1));
    assert!(!sandbox.path().join("late").exists());
    assert_eq!(sandbox.read_artifact("a/o"), "done\n");
}

#[test]
fn a_command_that_writes_into_its_input_fails_and_the_damaged_object_is_recomputed() {
    let sandbox = Sandbox::new();
    let yaml = r#"
stages:
  up:
    uses: cmd
    with: {run: 'echo clean > "$PIPE_OUT/o"', outputs: {o: o}}
  bad:
    uses: cmd
    inputs: {x: up.o}
    with: {run: 'chmod u+w "$PIPE_IN_X"; echo dirt >> "$PIPE_IN_X"; echo y > "$PIPE_OUT/o"', outputs: {o: o}}
"#;
    let summary = sandbox.run(yaml);
    assert_eq!(summary.failed(), vec!["bad"]);
    let fixed = yaml.replace("echo dirt >> \"$PIPE_IN_X\"; ", "");
    let (_, events) = sandbox.run_recorded(&fixed);
    assert!(
        finished(&events, ran).contains(&"up".to_string()),
        "the damaged upstream object is recomputed: {events:?}"
    );
    assert_eq!(sandbox.read_artifact("up/o"), "clean\n");
}
