//! The `device` parameter of the tensor stages without a GPU: `device: cpu` keeps the keys of
//! before, `device: cuda` without a GPU stops before anything runs (exit 2) and says how to get
//! one, a CPU-only binary given simulated GPUs fails the stage with the same advice, and the
//! native engines refuse a GPU.

use pipe::Plan;

use crate::common::{stderr, stdout, Sandbox};

fn train_yaml(device: &str) -> String {
    format!(
        "seed: 3\nstages:\n  data:\n    uses: data.reber\n    with: {{total: 400, test: {{count: 100}}}}\n  base:\n    uses: rnn.train\n    inputs: {{data: data.dataset}}\n    with: {{variant: gru, epochs: 1, hidden: 8, embedding: 4, layers: 1, batch_size: 16{device}}}\n"
    )
}

fn resolved_params(yaml: &str, stage: &str) -> serde_json::Value {
    let sandbox = Sandbox::new();
    let path = sandbox.write(yaml);
    let plan = Plan::load(&pipe_thesis_torch::registry(), &path).unwrap_or_else(|e| panic!("{e}"));
    let instance = plan.instances.iter().find(|i| i.stage == stage);
    instance.expect("stage").resolved.params.value()
}

#[test]
fn device_cpu_keeps_the_parameters_and_so_the_keys_of_before() {
    let absent = resolved_params(&train_yaml(""), "base");
    let cpu = resolved_params(&train_yaml(", device: cpu"), "base");
    assert_eq!(absent, cpu);
    // Exactly the fields hashed before `device` existed: adding one would change every key.
    let mut fields: Vec<&str> = absent
        .as_object()
        .expect("map")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "batch_size",
            "clip",
            "embedding",
            "embedding_init",
            "engine",
            "epochs",
            "hidden",
            "layers",
            "lr",
            "readout",
            "threads",
            "variant"
        ]
    );
    let cuda = resolved_params(&train_yaml(", device: 'cuda:0'"), "base");
    assert_eq!(
        cuda["device"], "cuda",
        "cuda:0 and cuda are one device, one key"
    );
    let gpus = |yaml: &str| {
        let sandbox = Sandbox::new();
        let path = sandbox.write(yaml);
        let plan =
            Plan::load(&pipe_thesis_torch::registry(), &path).unwrap_or_else(|e| panic!("{e}"));
        let index = plan
            .instances
            .iter()
            .position(|i| i.stage == "base")
            .unwrap();
        pipe::exec::gpus::instance_gpus(&plan, index)
    };
    assert_eq!(gpus(&train_yaml("")), 0);
    assert_eq!(
        gpus(&train_yaml(", device: cuda")),
        1,
        "cuda implies one GPU"
    );
    assert_eq!(gpus(&train_yaml(", device: 'cuda:1'")), 2);
}

#[test]
fn cuda_without_a_gpu_exits_2_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.write(&train_yaml(", device: cuda"));
    let output = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .env_remove("PIPE_GPUS")
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .expect("run pipe");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    for part in ["stage `base`", "no GPU", "make build-cuda", "PIPE_GPUS"] {
        assert!(message.contains(part), "`{part}` missing from:\n{message}");
    }
    assert_eq!(sandbox.record_count(), 0, "the data stage ran");
}

#[test]
fn a_cpu_only_binary_with_simulated_gpus_says_how_to_get_cuda() {
    if tch::Cuda::is_available() {
        return; // a real GPU: the stage would run
    }
    let sandbox = Sandbox::new();
    sandbox.write(&train_yaml(", device: cuda"));
    let output = sandbox
        .cli_command(&["run", "pipeline.yaml"])
        .env("PIPE_GPUS", "0")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .expect("run pipe");
    let message = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("FAILED  base: base: `device: cuda` needs CUDA"),
        "{message}"
    );
    assert!(message.contains("make build-cuda"), "{message}");
    assert!(message.contains("0 skipped"), "{message}");
}

#[test]
fn native_engines_refuse_a_gpu() {
    let sandbox = Sandbox::new();
    sandbox.write("stages:\n  graphs:\n    uses: graph.random\n  random:\n    uses: rnn.train_random\n    inputs: {graphs: graphs.graphs, data: graphs.graphs}\n    with: {variant: gru, device: cuda}\n");
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("CPU only"), "{message}");
    assert!(message.contains("engine: tensor"), "{message}");
}

#[test]
fn a_device_typo_is_a_pipeline_error() {
    let sandbox = Sandbox::new();
    sandbox.write(&train_yaml(", device: gpu"));
    let output = sandbox.cli(&["run", "pipeline.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`gpu` is not a device; write `cpu`, `cuda` or `cuda:N`"),
        "{}",
        stderr(&output)
    );
}
