//! `rnn.train` as a stage: deterministic bytes, resume after a kill, metrics, and `pipe eval`.

use crate::common::{run_and_kill_at_checkpoint, stderr, stdout, Sandbox};

fn pipeline(epochs: usize) -> String {
    pipeline_on("native", epochs)
}

/// A GRU trained on `engine` (`native`, the CPU default, or libtorch's `loop`).
fn pipeline_on(engine: &str, epochs: usize) -> String {
    format!(
        "seed: 3\nstages:\n  data:\n    uses: data.reber\n    with: {{total: 1200, test: {{count: 300}}}}\n  train:\n    uses: rnn.train\n    inputs: {{data: data.dataset}}\n    with: {{variant: gru, epochs: {epochs}, hidden: 24, embedding: 8, layers: 2, batch_size: 16, engine: {engine}}}\n"
    )
}

fn model_hash(sandbox: &Sandbox) -> String {
    let bytes = std::fs::read(sandbox.artifacts().join("train/model.safetensors")).unwrap();
    blake3::hash(&bytes).to_hex().to_string()
}

#[test]
fn same_seed_gives_identical_model_bytes_and_thesis_metrics_columns() {
    let a = Sandbox::new();
    let b = Sandbox::new();
    a.run(&pipeline(2));
    b.run(&pipeline(2));
    assert_eq!(model_hash(&a), model_hash(&b));
    let metrics = a.read_artifact("train/metrics.csv");
    let mut lines = metrics.lines();
    assert_eq!(
        lines.next(),
        Some("epoch,train_loss,train_acc,test_loss,test_acc,seconds")
    );
    assert_eq!(lines.count(), 2);
    let config = a.read_artifact("train/config.json");
    assert!(config.contains("\"variant\": \"gru\""), "{config}");
}

#[test]
fn killed_training_resumes_at_its_last_epoch_and_ends_identical() {
    for engine in ["native", "loop"] {
        killed_training_resumes_and_ends_identical_on(engine);
    }
}

fn killed_training_resumes_and_ends_identical_on(engine: &str) {
    let epochs = 8;
    let reference = Sandbox::new();
    reference.run(&pipeline_on(engine, epochs));

    let sandbox = Sandbox::new();
    sandbox.write(&pipeline_on(engine, epochs));
    let finished_before_kill = run_and_kill_at_checkpoint(&sandbox, "latest.json");

    let output = sandbox.cli(&["-v", "run", "pipeline.yaml"]);
    assert!(output.status.success(), "{}", stdout(&output));
    if finished_before_kill < 2 {
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains("resuming after epoch"), "{engine}: {log}");
    }
    assert_eq!(model_hash(&sandbox), model_hash(&reference), "{engine}");
    assert_eq!(
        sandbox.read_artifact("train/metrics.csv").lines().count(),
        epochs + 1
    );
}

/// Tensor names and shapes of a safetensors file, from its JSON header.
fn tensor_shapes(path: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let bytes = std::fs::read(path).unwrap();
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    let mut shapes: Vec<_> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .map(|(name, entry)| (name.clone(), entry["shape"].clone()))
        .collect();
    shapes.sort_by(|a, b| a.0.cmp(&b.0));
    shapes
}

/// The native kernels train what libtorch trains: from the same initial values and batches,
/// two epochs end at the same accuracies (within float drift), in a model file with
/// PyTorch's tensor names and shapes.
#[test]
fn native_training_follows_libtorch_and_writes_the_same_tensors() {
    let native = Sandbox::new();
    native.run(&pipeline_on("native", 2));
    let libtorch = Sandbox::new();
    libtorch.run(&pipeline_on("loop", 2));
    let rows = |sandbox: &Sandbox| -> Vec<Vec<f64>> {
        sandbox
            .read_artifact("train/metrics.csv")
            .lines()
            .skip(1)
            .map(|line| {
                line.split(',')
                    .take(5)
                    .map(|v| v.parse().unwrap())
                    .collect()
            })
            .collect()
    };
    let (ours, theirs) = (rows(&native), rows(&libtorch));
    assert_eq!(ours.len(), 2);
    for (a, b) in ours.iter().zip(&theirs) {
        // epoch, train_loss (a sum over 57 batches), train_acc, test_loss, test_acc
        assert!(
            (a[1] - b[1]).abs() < 0.05 * b[1].abs().max(1.0),
            "{a:?} vs {b:?}"
        );
        for column in [2, 4] {
            assert!((a[column] - b[column]).abs() < 0.02, "{a:?} vs {b:?}");
        }
    }
    let file = "train/model.safetensors";
    assert_eq!(
        tensor_shapes(&native.artifacts().join(file)),
        tensor_shapes(&libtorch.artifacts().join(file))
    );
}

#[test]
fn eval_reports_accuracy_and_names_shape_errors() {
    let sandbox = Sandbox::new();
    sandbox.run(&pipeline(1));
    let weights = sandbox.artifacts().join("train/model.safetensors");
    let data = sandbox.artifacts().join("data/dataset.csv");
    let args = |variant: &str| {
        vec![
            "eval".to_string(),
            "--variant".into(),
            variant.into(),
            "--weights".into(),
            weights.display().to_string(),
            "--data".into(),
            data.display().to_string(),
        ]
    };
    let ok = sandbox.cli(&args("gru").iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&ok);
    assert!(ok.status.success(), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("accuracy: 0."), "{out}");

    let mut json_args = args("gru");
    json_args.push("--json".into());
    let json = sandbox.cli(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["n"], 1200);

    let wrong = sandbox.cli(&args("lstm").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("rnn.weight_hh_l0") && err.contains("expected [96, 24]"),
        "{err}"
    );
}

/// A `rnn.train` stage named `name` with `threads` libtorch threads (fused LSTM kernels,
/// matrices large enough for libtorch's parallel kernels to split them).
fn threaded_stage(name: &str, threads: usize) -> String {
    format!(
        "  {name}:\n    uses: rnn.train\n    inputs: {{data: data.dataset}}\n    with: {{variant: lstm, engine: fused, epochs: 1, hidden: 64, embedding: 16, layers: 2, batch_size: 64, threads: {threads}}}\n"
    )
}

fn threaded_pipeline(stages: &[(&str, usize)]) -> String {
    let mut yaml = String::from(
        "seed: 4\nstages:\n  data:\n    uses: data.reber\n    with: {total: 600, test: {count: 150}}\n",
    );
    for (name, threads) in stages {
        yaml.push_str(&threaded_stage(name, *threads));
    }
    yaml
}

/// The bytes of a trained stage's model and its metrics without the wall-clock column.
fn trained_bytes(sandbox: &Sandbox, stage: &str) -> (String, String) {
    let metrics: Vec<String> = sandbox
        .read_artifact(&format!("{stage}/metrics.csv"))
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(kept, _)| kept).to_string())
        .collect();
    (model_hash_of(sandbox, stage), metrics.join("\n"))
}

fn model_hash_of(sandbox: &Sandbox, stage: &str) -> String {
    let path = sandbox
        .artifacts()
        .join(format!("{stage}/model.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    blake3::hash(&bytes).to_hex().to_string()
}

/// Scheduling never changes bytes: an instance with `threads: 1` computed beside one with
/// `threads: 2` (both in one process, jobs 3, so they overlap) gives the bytes it gives alone,
/// and so does the other. libtorch's thread count is process-global; the torch thread lease
/// (`pipe_thesis_torch::nn::TorchThreads`) keeps one count in force at a time.
#[test]
fn an_instance_gives_the_same_bytes_whatever_runs_beside_it() {
    let together = Sandbox::new();
    let summary = together.run_with(&threaded_pipeline(&[("one", 1), ("two", 2)]), |o| {
        o.jobs = 3
    });
    assert!(summary.success(), "{:?}", summary.reports);
    let alone_one = Sandbox::new();
    assert!(alone_one.run(&threaded_pipeline(&[("one", 1)])).success());
    let alone_two = Sandbox::new();
    assert!(alone_two.run(&threaded_pipeline(&[("two", 2)])).success());
    assert_eq!(
        trained_bytes(&together, "one"),
        trained_bytes(&alone_one, "one"),
        "threads: 1 beside threads: 2 differs from threads: 1 alone"
    );
    assert_eq!(
        trained_bytes(&together, "two"),
        trained_bytes(&alone_two, "two"),
        "threads: 2 beside threads: 1 differs from threads: 2 alone"
    );
}

/// `pipe eval` on damaged weights: every cause is said once, a missing tensor names the shape
/// it should have, and NaN or infinite weights are an error naming the tensor (not an accuracy).
#[test]
fn eval_errors_say_each_cause_once_and_reject_non_finite_weights() {
    use pipe_thesis_torch::nn::{ModelConfig, RecurrentModel, Variant};
    use tch::Tensor;

    let sandbox = Sandbox::new();
    let data = sandbox.path().join("data.csv");
    std::fs::write(&data, "string,valid\nBTSSXXTVVE,1\nBPVVE,1\nBTXXE,0\n").unwrap();
    let eval = |weights: &std::path::Path| {
        let output = sandbox.cli(&[
            "eval",
            "--variant",
            "gru",
            "--weights",
            &weights.display().to_string(),
            "--data",
            &data.display().to_string(),
        ]);
        (output.status.code(), stdout(&output), stderr(&output))
    };
    let mut config = ModelConfig::thesis(Variant::Gru);
    config.hidden_size = 6;
    config.embedding_dim = 4;
    config.num_layers = 2;
    let good = sandbox.path().join("good.safetensors");
    RecurrentModel::new(config, 1).unwrap().save(&good).unwrap();
    let (code, out, err) = eval(&good);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("accuracy: 0."), "{out}");
    let tensors = Tensor::read_safetensors(&good).unwrap();
    let write = |name: &str, edit: &dyn Fn(&str, &Tensor) -> Option<Tensor>| {
        let kept: Vec<(String, Tensor)> = tensors
            .iter()
            .filter_map(|(n, t)| edit(n, t).map(|t| (n.clone(), t)))
            .collect();
        let path = sandbox.path().join(name);
        Tensor::write_safetensors(&kept, &path).unwrap();
        path
    };

    let garbage = sandbox.path().join("garbage.safetensors");
    std::fs::write(&garbage, [0xffu8; 64]).unwrap();
    let (code, out, err) = eval(&garbage);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("garbage.safetensors"), "{err}");
    assert_eq!(err.matches("HeaderTooLarge").count(), 1, "said once: {err}");
    assert_eq!(
        err.matches("garbage.safetensors").count(),
        1,
        "said once: {err}"
    );

    let no_bias = write("no-bias.safetensors", &|n, t| {
        (n != "rnn.bias_hh_l1").then(|| t.shallow_clone())
    });
    let (code, _, err) = eval(&no_bias);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`rnn.bias_hh_l1` is missing (expected shape [18])"),
        "{err}"
    );
    let no_embedding = write("no-embedding.safetensors", &|n, t| {
        (n != "embedding.weight").then(|| t.shallow_clone())
    });
    let (code, _, err) = eval(&no_embedding);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`embedding.weight` is missing (expected shape [128, E]"),
        "{err}"
    );

    for (file, value) in [
        ("nan.safetensors", f32::NAN),
        ("inf.safetensors", f32::INFINITY),
    ] {
        let poisoned = write(file, &|n, t| {
            let t = t.copy();
            if n == "rnn.weight_hh_l1" {
                let _ = t.get(2).get(3).fill_(f64::from(value));
            }
            Some(t)
        });
        let (code, out, err) = eval(&poisoned);
        assert_eq!(code, Some(2), "{file}: {out}{err}");
        assert!(!out.contains("accuracy"), "{file}: {out}");
        assert!(
            err.contains("tensor `rnn.weight_hh_l1` has 1 non-finite values"),
            "{file}: {err}"
        );
    }
}
