//! The SLURM executor against a live cluster (`scripts/slurm-test-cluster.sh start`): same
//! artifacts as the local executor, one array per fan-out, failures that stop only their
//! dependents, and a killed coordinator whose jobs are adopted rather than resubmitted.
//!
//! The tests that need the cluster are `#[ignore]`d; `make test` runs them when
//! `scripts/slurm-test-cluster.sh start` succeeds, with `PIPE_REQUIRE_SLURM=1` (`common::Env`
//! has the rule). The others (`pipe exec` without a cluster, validation) always run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pipe::exec::{Executor, SlurmOptions};
use pipe::spec::SlurmSettings;
use pipe::{Outcome, Plan, RunOptions, RunSummary, Store};

use crate::common::{require, sorted, stderr, stdout, Env, Sandbox};

use super::caching::HELLO;

/// Whether a cluster answers (see `common::Env` for what happens when none does).
fn cluster(test: &str) -> bool {
    // One `sinfo` per test binary: with slurmctld down it takes seconds to give up.
    static AVAILABLE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let available = AVAILABLE
        .get_or_init(pipe::exec::slurm::cluster_available)
        .clone();
    require(test, Env::Slurm, available)
}

fn slurm_options() -> SlurmOptions {
    let mut options =
        SlurmOptions::with_program(SlurmSettings::default(), env!("CARGO_BIN_EXE_pipe").into());
    options.max_poll = Duration::from_millis(500);
    options
}

fn run_on_slurm(sandbox: &Sandbox, yaml: &str, options: &SlurmOptions) -> RunSummary {
    let path = sandbox.write(yaml);
    let plan = Plan::load(&pipe_thesis_torch::registry(), &path)
        .unwrap_or_else(|e| panic!("plan failed:\n{e}"));
    let store = Store::open(&sandbox.cache()).expect("store");
    let run_options = RunOptions {
        jobs: 2,
        force: Vec::new(),
        only: Vec::new(),
        artifacts: sandbox.artifacts(),
    };
    pipe::run_with(
        &plan,
        &store,
        &run_options,
        &Executor::Slurm(options.clone()),
        &|_| {},
    )
    .expect("slurm run")
}

/// Lines of `cache/slurm/submissions.log`: `(job id, key)`.
fn submissions(sandbox: &Sandbox) -> Vec<(String, String)> {
    std::fs::read_to_string(sandbox.cache().join("slurm/submissions.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, key)| (id.to_string(), key.to_string()))
        .collect()
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn hello_pipeline_on_slurm_gives_the_local_artifacts() {
    if !cluster("hello_pipeline_on_slurm_gives_the_local_artifacts") {
        return;
    }
    let local = Sandbox::new();
    let local_summary = local.run(HELLO);
    let remote = Sandbox::new();
    let options = slurm_options();
    let summary = run_on_slurm(&remote, HELLO, &options);
    assert!(summary.success(), "{:#?}", summary.reports);
    assert_eq!(
        sorted(summary.ran()),
        ["joined", "words[alpha]", "words[beta]", "words[gamma]"]
    );
    for artifact in [
        "joined/all.txt",
        "words/alpha/word.txt",
        "words/beta/word.txt",
        "words/gamma/word.txt",
    ] {
        assert_eq!(
            remote.read_artifact(artifact),
            local.read_artifact(artifact),
            "{artifact}"
        );
    }
    let keys = |s: &RunSummary| {
        let mut k: Vec<_> = s.reports.iter().map(|r| r.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&summary),
        keys(&local_summary),
        "same keys on both executors"
    );
    // The three words went out as one array, `joined` as a second submission.
    assert_eq!(pipe::exec::SlurmStats::get(&options.stats.submissions), 2);
    let again = run_on_slurm(&remote, HELLO, &options);
    assert!(again.ran().is_empty(), "re-ran {:?}", again.ran());
    assert_eq!(again.cached().len(), 4);
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn a_fan_out_of_twenty_is_one_job_array() {
    if !cluster("a_fan_out_of_twenty_is_one_job_array") {
        return;
    }
    let values: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let yaml = format!(
        "stages:\n  fan:\n    uses: cmd\n    foreach:\n      i: [{}]\n    resources: {{cpus: 1, mem: 64M, time: 5}}\n    with:\n      run: 'echo ${{i}} > \"$PIPE_OUT/v.txt\"'\n      outputs: {{v: v.txt}}\n",
        values.join(", ")
    );
    let sandbox = Sandbox::new();
    let options = slurm_options();
    let summary = run_on_slurm(&sandbox, &yaml, &options);
    assert!(summary.success(), "{:#?}", summary.reports);
    assert_eq!(summary.ran().len(), 20);
    assert_eq!(pipe::exec::SlurmStats::get(&options.stats.submissions), 1);
    let lines = submissions(&sandbox);
    assert_eq!(lines.len(), 20);
    let arrays: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|(id, _)| id.split_once('_').map(|(array, _)| array))
        .collect();
    assert_eq!(arrays.len(), 1, "one array id: {lines:?}");
    assert_eq!(sandbox.read_artifact("fan/7/v.txt"), "7\n");
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn a_failing_job_shows_its_log_and_stops_only_its_dependents() {
    if !cluster("a_failing_job_shows_its_log_and_stops_only_its_dependents") {
        return;
    }
    let yaml = r#"stages:
  good:
    uses: cmd
    with: {run: 'echo ok > "$PIPE_OUT/g.txt"', outputs: {g: g.txt}}
  bad:
    uses: cmd
    with: {run: 'echo "about to fail" >&2; exit 3', outputs: {b: b.txt}}
  after_bad:
    uses: cmd
    inputs: {x: bad.b}
    with: {run: 'cp "$PIPE_IN_X" "$PIPE_OUT/y.txt"', outputs: {y: y.txt}}
  after_good:
    uses: cmd
    inputs: {x: good.g}
    with: {run: 'cp "$PIPE_IN_X" "$PIPE_OUT/y.txt"', outputs: {y: y.txt}}
"#;
    let sandbox = Sandbox::new();
    let summary = run_on_slurm(&sandbox, yaml, &slurm_options());
    assert_eq!(summary.failed(), ["bad"]);
    assert_eq!(summary.skipped(), ["after_bad"]);
    assert_eq!(sorted(summary.ran()), ["after_good", "good"]);
    let report = summary
        .reports
        .iter()
        .find(|r| r.name == "bad")
        .expect("bad is reported");
    let Outcome::Failed { error, log } = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    let log = log.as_ref().expect("the failure names its log");
    assert!(
        log.starts_with(sandbox.cache().join("logs")),
        "{}",
        log.display()
    );
    assert!(log.to_string_lossy().ends_with(".out"), "{}", log.display());
    let text = std::fs::read_to_string(log).expect("log exists");
    assert!(text.contains("bad failed"), "{text}");
    assert!(error.contains("ended without a result"), "{error}");
    // `pipe show` points to the job log even though the instance has no record.
    let shown = stdout(&sandbox.cli(&["show", "pipeline.yaml", "bad"]));
    assert!(
        shown.contains("SLURM job") && shown.contains(&log.display().to_string()),
        "{shown}"
    );
    // The command's own output is in the plugin log the job log points to.
    let plugin_log = log.with_extension("log");
    assert!(
        std::fs::read_to_string(&plugin_log)
            .unwrap_or_default()
            .contains("about to fail"),
        "{}",
        plugin_log.display()
    );
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn a_killed_coordinator_leaves_jobs_that_the_next_run_adopts() {
    if !cluster("a_killed_coordinator_leaves_jobs_that_the_next_run_adopts") {
        return;
    }
    let yaml = r#"settings:
  executor: slurm
stages:
  quick:
    uses: cmd
    foreach: {i: [1, 2]}
    with: {run: 'echo ${i} > "$PIPE_OUT/q.txt"', outputs: {q: q.txt}}
  slow:
    uses: cmd
    foreach: {i: [1, 2, 3]}
    with: {run: 'sleep 4; echo ${i} > "$PIPE_OUT/s.txt"', outputs: {s: s.txt}}
"#;
    let sandbox = Sandbox::new();
    sandbox.write(yaml);
    let mut coordinator = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the coordinator");
    // Kill it once every instance is submitted and the quick ones have finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    while submissions(&sandbox).len() < 5 || sandbox.record_count() < 2 {
        assert!(Instant::now() < deadline, "the jobs did not start in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    coordinator.kill().expect("kill the coordinator");
    let _ = coordinator.wait();
    let before = submissions(&sandbox);

    let options = slurm_options();
    let summary = run_on_slurm(&sandbox, yaml, &options);
    assert!(summary.success(), "{:#?}", summary.reports);
    assert_eq!(submissions(&sandbox), before, "nothing was submitted again");
    assert_eq!(pipe::exec::SlurmStats::get(&options.stats.submissions), 0);
    let adopted = options.stats.adopted.load(Ordering::Relaxed) as usize;
    assert_eq!(
        adopted + summary.cached().len(),
        5,
        "each instance is adopted (still running) or cached (finished)"
    );
    assert!(summary.cached().len() >= 2, "{:?}", summary.cached());
    assert_eq!(sandbox.read_artifact("slow/3/s.txt"), "3\n");
}

#[test]
fn exec_fails_clearly_when_the_cache_is_not_visible() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path().join("not-mounted");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .arg("--cache")
        .arg(&missing)
        .args(["exec", "0123abcd"])
        .output()
        .expect("run pipe exec");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("cannot see"),
        "{message}"
    );
}

/// A cache this node sees but no description for the key: a mistaken key (exit 2), not a
/// missing mount (exit 3), whether or not anything was ever submitted from that cache.
#[test]
fn exec_with_an_unknown_key_says_there_is_no_job_description() {
    let sandbox = Sandbox::new();
    sandbox.run(HELLO);
    for submitted_before in [false, true] {
        if submitted_before {
            std::fs::create_dir_all(sandbox.cache().join("jobs")).expect("jobs dir");
        }
        let output = sandbox.cli(&["exec", "0123abcd"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(
            message.contains("no job description for key 0123abcd")
                && message.contains("pipe run --executor slurm")
                && !message.contains("cannot see"),
            "{message}"
        );
    }
    let output = sandbox.cli(&["exec", "../../etc/passwd"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not an instance key"),
        "{}",
        stderr(&output)
    );
}

/// `pipe show` (which also points to SLURM job logs) on a damaged cache: the unreadable record is
/// reported, the other instances are still shown, and the exit code says it went wrong; an
/// unknown stage is a usage error.
#[test]
fn show_reports_a_damaged_record_and_exits_non_zero() {
    let sandbox = Sandbox::new();
    let summary = sandbox.run(HELLO);
    let key_of = |name: &str| {
        summary
            .reports
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.key.clone())
            .unwrap_or_else(|| panic!("{name} is reported"))
    };
    let record = sandbox
        .cache()
        .join("records")
        .join(format!("{}.json", key_of("words[alpha]")));
    let text = std::fs::read(&record).expect("the record exists");
    let mut permissions = std::fs::metadata(&record).expect("metadata").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&record, permissions).expect("make the record writable");
    std::fs::write(&record, &text[..text.len() / 2]).expect("truncate the record");

    let output = sandbox.cli(&["show", "pipeline.yaml", "words"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(3), "{out}{err}");
    assert!(
        err.contains("words[alpha]") && err.contains(&record.display().to_string()),
        "{err}"
    );
    assert!(
        out.contains(&key_of("words[gamma]")[..12]),
        "the other instances are still shown: {out}"
    );

    let unknown = sandbox.cli(&["show", "pipeline.yaml", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("`nosuch` matches no stage"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn executor_and_resources_are_validated_with_positions() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "settings:\n  executor: slurmm\nstages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n",
    );
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("pipeline.yaml:2:"),
        "{}",
        stderr(&output)
    );
    sandbox.write(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n    resources: {mem: lots}\n",
    );
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("pipeline.yaml:5:") && message.contains("`lots` is not a memory size"),
        "{message}"
    );
    assert!(stdout(&output).is_empty(), "nothing ran");
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn ctrl_c_cancels_the_jobs_of_the_run() {
    if !cluster("ctrl_c_cancels_the_jobs_of_the_run") {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.write(
        "stages:\n  slow:\n    uses: cmd\n    foreach: {i: [1, 2, 3]}\n    with: {run: 'sleep 60; echo ${i} > \"$PIPE_OUT/s.txt\"', outputs: {s: s.txt}}\n",
    );
    let coordinator = sandbox
        .cli_command(&["run", "--executor", "slurm", "pipeline.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the coordinator");
    let deadline = Instant::now() + Duration::from_secs(30);
    while submissions(&sandbox).len() < 3 {
        assert!(Instant::now() < deadline, "the jobs were not submitted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = coordinator.id() as libc::pid_t;
    // SAFETY: signals a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = coordinator.wait_with_output().expect("coordinator exits");
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cancelled 3 SLURM job(s)"),
        "{}",
        stderr(&output)
    );
    // scancel is asynchronous: the jobs leave the queue within a few seconds.
    let ours: Vec<String> = submissions(&sandbox)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let queue = std::process::Command::new("squeue")
            .args(["--noheader", "--array", "--format=%i"])
            .output()
            .expect("squeue");
        let queue = String::from_utf8_lossy(&queue.stdout).into_owned();
        if !queue.lines().any(|l| ours.contains(&l.trim().to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still queued after scancel: {queue}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sandbox.record_count(), 0);
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn max_jobs_caps_what_is_queued_at_once() {
    if !cluster("max_jobs_caps_what_is_queued_at_once") {
        return;
    }
    let values: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    let yaml = format!(
        "settings:\n  slurm: {{max_jobs: 5}}\nstages:\n  fan:\n    uses: cmd\n    foreach:\n      i: [{}]\n    with:\n      run: 'echo ${{i}} > \"$PIPE_OUT/v.txt\"'\n      outputs: {{v: v.txt}}\n",
        values.join(", ")
    );
    let sandbox = Sandbox::new();
    let path = sandbox.write(&yaml);
    let plan = Plan::load(&pipe_thesis_torch::registry(), &path).expect("plan");
    let mut options = slurm_options();
    options.settings = plan
        .source
        .spec
        .settings
        .slurm
        .clone()
        .expect("settings.slurm");
    let summary = run_on_slurm(&sandbox, &yaml, &options);
    assert!(summary.success(), "{:#?}", summary.reports);
    assert_eq!(summary.ran().len(), 12);
    let mut per_array = std::collections::BTreeMap::<String, usize>::new();
    for (id, _) in submissions(&sandbox) {
        let array = id.split_once('_').map(|(a, _)| a.to_string()).unwrap_or(id);
        *per_array.entry(array).or_default() += 1;
    }
    assert!(per_array.len() >= 3, "{per_array:?}");
    assert!(per_array.values().all(|&n| n <= 5), "{per_array:?}");
}

/// Whether the cluster's nodes offer GPUs as generic resources (`sinfo -h -o %G`).
fn cluster_has_gpus() -> bool {
    std::process::Command::new("sinfo")
        .args(["-h", "-o", "%G"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("gpu"))
        .unwrap_or(false)
}

#[test]
#[ignore = "needs a SLURM cluster: make test runs it when scripts/slurm-test-cluster.sh starts one"]
fn a_gpu_stage_asks_slurm_for_its_gpus_in_the_job_script() {
    if !cluster("a_gpu_stage_asks_slurm_for_its_gpus_in_the_job_script") {
        return;
    }
    let yaml = r#"stages:
  gpu:
    uses: cmd
    resources: {gpus: 1, time: 5}
    with:
      run: printf '%s\n' "$${CUDA_VISIBLE_DEVICES-unset}" > "$PIPE_OUT/seen.txt"
      outputs: {seen: seen.txt}
  plain:
    uses: cmd
    with: {run: 'echo ok > "$PIPE_OUT/p.txt"', outputs: {p: p.txt}}
"#;
    let sandbox = Sandbox::new();
    let summary = run_on_slurm(&sandbox, yaml, &slurm_options());
    let scripts: Vec<String> = std::fs::read_dir(sandbox.cache().join("slurm/arrays"))
        .expect("arrays")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sh"))
        .map(|e| std::fs::read_to_string(e.path()).expect("script"))
        .collect();
    assert_eq!(scripts.len(), 2, "one array per stage");
    let gres: Vec<&String> = scripts
        .iter()
        .filter(|s| s.lines().nth(1) == Some("#SBATCH --gres=gpu:1"))
        .collect();
    assert_eq!(
        gres.len(),
        1,
        "only the GPU stage asks for a GPU: {scripts:#?}"
    );
    assert!(summary.ran().contains(&"plain"), "{:#?}", summary.reports);
    if cluster_has_gpus() {
        // The worker hands the instance the GPU SLURM allocated.
        assert!(summary.success(), "{:#?}", summary.reports);
        let seen = sandbox.read_artifact("gpu/seen.txt");
        assert!(
            !seen.trim().is_empty() && seen.trim() != "unset",
            "CUDA_VISIBLE_DEVICES={seen:?}"
        );
    } else {
        // The test cluster has no GPUs: SLURM itself refuses the request (or the worker, where
        // SLURM accepts it on a node without one); either way the GPU stage fails alone.
        assert_eq!(summary.failed(), ["gpu"], "{:#?}", summary.reports);
    }
}
