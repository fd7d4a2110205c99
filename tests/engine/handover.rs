//! `pipe` links no libtorch: it plans, decides and runs everything else itself, and hands a run
//! that must compute a tensor stage (or give an instance a GPU) to `pipe-torch` beside it, before
//! it records or locks anything.

use std::process::{Command, Output};

use crate::common::{stderr, stdout, Sandbox};

/// A tiny tensor pipeline: data, one epoch of a small GRU, and a `cmd` stage after it.
const TENSOR_PIPELINE: &str = "seed: 3\nstages:\n  data:\n    uses: data.reber\n    with: {total: 200, test: {count: 50}}\n  base:\n    uses: rnn.train\n    inputs: {data: data.dataset}\n    with: {variant: gru, epochs: 1, hidden: 8, embedding: 4, layers: 1, batch_size: 16}\n  after:\n    uses: cmd\n    inputs: {model: base.model}\n    with: {run: 'wc -c < \"$PIPE_IN_MODEL\" > \"$PIPE_OUT/size.txt\"', outputs: {size: size.txt}}\n";

/// `pipe ARGS` pointed at a torch binary that does not exist, so any handover fails visibly.
fn without_torch(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut command = sandbox.cli_command(args);
    command.env("PIPE_TORCH", "/nonexistent/pipe-torch");
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("run pipe")
}

fn runs_listed(sandbox: &Sandbox) -> usize {
    let listed = sandbox.cli(&["runs"]);
    stdout(&listed).lines().skip(1).count()
}

#[test]
fn a_run_that_must_train_is_handed_to_pipe_torch_and_a_no_op_needs_no_libtorch() {
    let sandbox = Sandbox::new();
    sandbox.write(TENSOR_PIPELINE);

    // Without the torch binary, the run stops before anything is recorded, and says what to do.
    let refused = output(without_torch(&sandbox, &["run", "pipeline.yaml"]));
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("base runs `rnn.train`, which computes on libtorch")
            && message.contains("/nonexistent/pipe-torch")
            && message.contains("make build"),
        "{message}"
    );
    assert_eq!(sandbox.record_count(), 0, "nothing ran");
    assert_eq!(runs_listed(&sandbox), 0, "no run was recorded");

    // With it beside `pipe`, the same command runs everything, once.
    let ran = sandbox.cli(&["run", "pipeline.yaml"]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(stdout(&ran).contains("3 ran, 0 cached"), "{}", stdout(&ran));
    assert_eq!(runs_listed(&sandbox), 1, "one run, recorded once");

    // Everything is cached: `pipe` decides and materialises alone, without libtorch.
    let again = output(without_torch(&sandbox, &["run", "pipeline.yaml"]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("0 ran, 3 cached"),
        "{}",
        stdout(&again)
    );

    // A re-run of the `cmd` stage alone needs no libtorch either.
    let forced = output(without_torch(
        &sandbox,
        &["run", "pipeline.yaml", "--force", "after"],
    ));
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("1 ran, 2 cached"),
        "{}",
        stdout(&forced)
    );

    // Forcing the tensor stage hands over again.
    let retrain = output(without_torch(
        &sandbox,
        &["run", "pipeline.yaml", "--force", "base"],
    ));
    assert!(!retrain.status.success());
    assert!(
        stderr(&retrain).contains("computes on libtorch"),
        "{}",
        stderr(&retrain)
    );

    // Planning, status and reports never need it.
    for args in [
        &["status", "pipeline.yaml"][..],
        &["run", "pipeline.yaml", "--dry-run", "--force", "base"],
        &["exp", "show", "pipeline.yaml"],
        &["plugins"],
    ] {
        let result = output(without_torch(&sandbox, args));
        assert!(
            result.status.success(),
            "pipe {args:?}: {}",
            stderr(&result)
        );
    }
}

#[test]
fn an_instance_that_needs_a_gpu_is_handed_over_since_only_libtorch_counts_them() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "stages:\n  gpu:\n    uses: cmd\n    resources: {gpus: 1}\n    with: {run: 'echo \"$CUDA_VISIBLE_DEVICES\" > \"$PIPE_OUT/d.txt\"', outputs: {d: d.txt}}\n",
    );
    let refused = without_torch(&sandbox, &["run", "pipeline.yaml"])
        .env("PIPE_GPUS", "0")
        .output()
        .expect("run pipe");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("gpu needs a GPU, which only libtorch can count"),
        "{}",
        stderr(&refused)
    );
    let ran = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .env("PIPE_GPUS", "0")
        .output()
        .expect("run pipe");
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(sandbox.read_artifact("gpu/d.txt").trim(), "0");
}
