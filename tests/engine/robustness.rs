//! Crashes, corruption, concurrency and garbage collection never lose finished work.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{run_and_kill_at_checkpoint, stderr, stdout, Sandbox};

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn make_writable(path: &Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
}

/// Three quick instances, then one that checkpoints, sleeps, and on a second attempt resumes.
const CRASHY: &str = r#"
stages:
  fast:
    uses: cmd
    foreach: {n: [1, 2, 3]}
    with: {run: 'echo ${n} > $PIPE_OUT/n', outputs: {n: n}}
  slow:
    uses: cmd
    inputs: {one: 'fast[1].n'}
    # Starts only when all three are recorded, so the kill never lands in the middle of one.
    needs: [fast]
    with:
      run: |
        if [ -f "$PIPE_CHECKPOINT/half" ]; then echo resumed > "$PIPE_OUT/r"
        else touch "$PIPE_CHECKPOINT/half"; sleep 60; echo fresh > "$PIPE_OUT/r"; fi
      outputs: {r: r}
"#;

#[test]
fn killed_run_resumes_without_redoing_finished_work() {
    let sandbox = Sandbox::new();
    sandbox.write(CRASHY);
    run_and_kill_at_checkpoint(&sandbox, "half");
    let checkpoints = sandbox.cache().join("checkpoints");
    assert_eq!(
        sandbox.record_count(),
        3,
        "the three fast instances had finished"
    );

    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.contains("1 ran, 3 cached"), "{out}");
    assert_eq!(sandbox.read_artifact("slow/r"), "resumed\n");
    // Finished instances drop their checkpoints; leftover staging is cleared.
    assert_eq!(std::fs::read_dir(&checkpoints).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(sandbox.cache().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

const TWO: &str = "stages:\n  a:\n    uses: cmd\n    with: {run: 'echo aaaa > $PIPE_OUT/a', outputs: {a: a}}\n  b:\n    uses: cmd\n    inputs: {x: a.a}\n    with: {run: 'cat $PIPE_IN_X $PIPE_IN_X > $PIPE_OUT/b', outputs: {b: b}}\n";

fn corrupt_object_of(sandbox: &Sandbox, content: &[u8]) {
    let hash = blake3::hash(content).to_hex().to_string();
    let object = sandbox
        .cache()
        .join("objects")
        .join(&hash[..2])
        .join(&hash[2..]);
    make_writable(&object);
    // Same length, other bytes: only the hash can tell.
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&object, bytes).unwrap();
}

#[test]
fn corrupted_object_is_detected_and_recomputed_by_run() {
    let sandbox = Sandbox::new();
    sandbox.run(TWO);
    corrupt_object_of(&sandbox, b"aaaa\n");
    let summary = sandbox.run(TWO);
    assert_eq!(summary.ran(), ["a"]);
    assert!(matches!(
        &summary.reports[0].outcome,
        pipe::Outcome::Ran { reason: pipe::exec::Reason::OutputDamaged(names), .. } if names == &["a".to_string()]
    ));
    assert_eq!(
        summary.cached(),
        ["b"],
        "a's bytes are the same again, so b is cut off"
    );
    assert_eq!(sandbox.read_artifact("a/a"), "aaaa\n");
}

#[test]
fn verify_reports_and_removes_damage_so_the_next_run_recomputes() {
    let sandbox = Sandbox::new();
    sandbox.run(TWO);
    let clean = sandbox.cli(&["verify"]);
    assert!(clean.status.success());
    assert!(stdout(&clean).contains("verified 2 outputs of 2 records: 0 damaged"));

    corrupt_object_of(&sandbox, b"aaaa\naaaa\n");
    let damaged = sandbox.cli(&["verify"]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(
        stdout(&damaged).contains("damaged: b output `b`"),
        "{}",
        stdout(&damaged)
    );
    assert_eq!(sandbox.run(TWO).ran(), ["b"]);
    assert_eq!(sandbox.read_artifact("b/b"), "aaaa\naaaa\n");
}

/// Instances that say they started (a marker file) and then hold their run until the test
/// creates `release`: no timing assumption decides what overlaps.
const HELD_UNTIL_RELEASED: &str = r#"
stages:
  s:
    uses: cmd
    foreach: {k: [1, 2, 3]}
    with:
      run: |
        touch "$PIPE_PROJECT/started"
        for _ in $(seq 6000); do [ -f "$PIPE_PROJECT/release" ] && break; sleep 0.01; done
        echo ${k} > "$PIPE_OUT/o"
      outputs: {o: o}
"#;

#[test]
fn concurrent_runs_on_one_cache_wait_and_both_succeed() {
    use std::io::{BufRead, BufReader};
    let sandbox = Sandbox::new();
    sandbox.write(HELD_UNTIL_RELEASED);
    let release = sandbox.path().join("release");
    let first = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first run holds the cache lock while an instance of it runs.
    let started = sandbox.path().join("started");
    wait_for("the first run to start", Duration::from_secs(60), || {
        started.exists()
    });
    let mut second = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr, line by line, until it says it waits (or ends, or a minute passes).
    let (lines, received) = std::sync::mpsc::channel();
    let second_stderr = second.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(second_stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let waited = loop {
        match received.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("waiting for another pipe process") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    // Released either way, so a failing assertion never leaves the runs hanging.
    std::fs::write(&release, b"").unwrap();
    let first = first.wait_with_output().unwrap();
    let second_output = second.wait_with_output().unwrap();
    let second_stderr = reader.join().unwrap();
    assert!(waited, "the second run did not wait: {second_stderr}");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second_output.status.success(), "{second_stderr}");
    assert!(
        stdout(&first).contains("3 ran, 0 cached"),
        "{}",
        stdout(&first)
    );
    assert!(
        stdout(&second_output).contains("0 ran, 3 cached"),
        "{}",
        stdout(&second_output)
    );
    assert_eq!(sandbox.record_count(), 3);
}

#[test]
fn gc_removes_only_unreachable_objects() {
    let sandbox = Sandbox::new();
    sandbox.run(TWO);
    let orphan = sandbox.cache().join("objects/zz/orphan");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"nobody points here").unwrap();
    std::fs::create_dir_all(sandbox.cache().join("staging/leftover")).unwrap();

    let output = sandbox.cli(&["gc"]);
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("removed 1 objects"),
        "{}",
        stdout(&output)
    );
    assert!(!orphan.exists());
    assert!(!sandbox.cache().join("staging/leftover").exists());
    let verify = sandbox.cli(&["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(sandbox.run(TWO).ran().is_empty());
}

/// `pipe status FILE | head -1`: a reader that goes away ends `pipe` quietly (141, as a shell
/// reports a process ended by SIGPIPE), not with a panic message.
#[test]
fn a_closed_stdout_ends_pipe_quietly() {
    let sandbox = Sandbox::new();
    let values: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    sandbox.write(&format!(
        "stages:\n  gen:\n    uses: cmd\n    foreach:\n      i: [{}]\n    with:\n      run: 'true'\n",
        values.join(", ")
    ));
    let mut child = sandbox
        .cli_command(&["status", "pipeline.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closes before `pipe` has started: its first line meets a broken pipe.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let said = stderr(&output);
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(output.status.code(), Some(141), "{said}");
}
