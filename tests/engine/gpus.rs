//! GPUs as a resource of the local executor, simulated with `PIPE_GPUS` (no GPU needed): slots
//! that never hand one GPU to two instances at once, `CUDA_VISIBLE_DEVICES` for `cmd`, and a run
//! that needs a GPU it cannot have stopping with exit 2 before anything runs.

use crate::common::{stderr, Sandbox};

/// Four instances needing one GPU each, a fifth needing none; each records when it held what.
const FOUR_ON_TWO: &str = r#"stages:
  gpu:
    uses: cmd
    foreach:
      i: [1, 2, 3, 4]
    resources: {gpus: 1}
    with:
      run: |
        start=$(date +%s.%N)
        sleep 0.6
        printf '%s %s %s\n' "$start" "$(date +%s.%N)" "$${CUDA_VISIBLE_DEVICES-unset}" > "$PIPE_OUT/held.txt"
      outputs: {held: held.txt}
  cpu:
    uses: cmd
    with:
      run: printf '%s\n' "$${CUDA_VISIBLE_DEVICES-unset}" > "$PIPE_OUT/seen.txt"
      outputs: {seen: seen.txt}
"#;

struct Held {
    start: f64,
    end: f64,
    ids: Vec<String>,
}

fn pipe_gpus_run(sandbox: &Sandbox, gpus: &str, yaml: &str) -> std::process::Output {
    sandbox.write(yaml);
    sandbox
        .cli_command(&["run", "pipeline.yaml", "--jobs", "4"])
        .env("PIPE_GPUS", gpus)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .expect("run pipe")
}

#[test]
fn simulated_gpus_go_to_one_instance_at_a_time() {
    let sandbox = Sandbox::new();
    let output = pipe_gpus_run(&sandbox, "0,1", FOUR_ON_TWO);
    assert!(output.status.success(), "{}", stderr(&output));
    let held: Vec<Held> = (1..=4)
        .map(|i| {
            let text = sandbox.read_artifact(&format!("gpu/{i}/held.txt"));
            let fields: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "instance {i}: {text:?}");
            Held {
                start: fields[0].parse().expect("start"),
                end: fields[1].parse().expect("end"),
                ids: fields[2].split(',').map(String::from).collect(),
            }
        })
        .collect();
    for (i, h) in held.iter().enumerate() {
        assert_eq!(h.ids.len(), 1, "instance {} saw {:?}", i + 1, h.ids);
        assert!(["0", "1"].contains(&h.ids[0].as_str()), "{:?}", h.ids);
    }
    let overlap = |a: &Held, b: &Held| a.start < b.end && b.start < a.end;
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            assert!(
                !(overlap(a, b) && a.ids == b.ids),
                "GPU {:?} held by two instances at once",
                a.ids
            );
        }
        // At any instant (take each start) at most two hold a GPU.
        let at_once = held
            .iter()
            .filter(|h| h.start <= a.start && a.start < h.end)
            .count();
        assert!(at_once <= 2, "{at_once} GPU instances at once");
    }
    // Four 0.6 s instances on two GPUs with four thread slots: both GPUs were used.
    assert!(held.iter().any(|h| h.ids[0] == "0") && held.iter().any(|h| h.ids[0] == "1"));
    // An instance without GPUs is shown none while the run hands them out.
    assert_eq!(sandbox.read_artifact("cpu/seen.txt"), "\n");
}

#[test]
fn a_gpu_instance_without_a_gpu_stops_the_run_before_anything_runs() {
    let sandbox = Sandbox::new();
    let yaml = "stages:\n  first:\n    uses: cmd\n    with: {run: 'echo a > \"$PIPE_OUT/a.txt\"', outputs: {a: a.txt}}\n  train:\n    uses: cmd\n    inputs: {a: first.a}\n    resources: {gpus: 2}\n    with: {run: 'true'}\n";
    let output = pipe_gpus_run(&sandbox, "0", yaml);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    for part in [
        "stage `train`",
        "needs 2 GPU(s)",
        "PIPE_GPUS names only 1",
        "make build-cuda",
        "PIPE_GPUS=0,1",
    ] {
        assert!(message.contains(part), "`{part}` missing from:\n{message}");
    }
    assert_eq!(sandbox.record_count(), 0, "something ran");
}

#[test]
fn a_bad_pipe_gpus_list_is_a_usage_error() {
    let sandbox = Sandbox::new();
    let output = pipe_gpus_run(&sandbox, "0,zero", FOUR_ON_TWO);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("PIPE_GPUS=`0,zero`: `zero` is not a GPU index"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sandbox.record_count(), 0);
}

#[test]
fn cmd_cannot_set_cuda_visible_devices_itself() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "stages:\n  a:\n    uses: cmd\n    with: {run: 'true', env: {CUDA_VISIBLE_DEVICES: '1'}}\n",
    );
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("resources: {gpus: N}"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_cached_gpu_instance_needs_no_gpu() {
    let sandbox = Sandbox::new();
    let yaml = "stages:\n  gpu:\n    uses: cmd\n    resources: {gpus: 1}\n    with: {run: 'echo done > \"$PIPE_OUT/d.txt\"', outputs: {d: d.txt}}\n";
    let first = pipe_gpus_run(&sandbox, "0", yaml);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(sandbox.record_count(), 1);
    // On a machine without GPUs the cached result is reused, not refused.
    let again = pipe_gpus_run(&sandbox, "", yaml);
    assert!(again.status.success(), "{}", stderr(&again));
    // Forcing it makes it a run again, which needs the GPU it cannot have.
    sandbox.write(yaml);
    let forced = sandbox
        .cli_command(&["run", "pipeline.yaml", "--force", "gpu"])
        .env("PIPE_GPUS", "")
        .output()
        .expect("run pipe");
    assert_eq!(forced.status.code(), Some(2), "{}", stderr(&forced));
}
