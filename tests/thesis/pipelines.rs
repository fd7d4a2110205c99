//! `pipelines/ci.yaml` (the whole thesis DAG at a tiny scale): reproducible to the byte in fresh
//! caches and a no-op when run again; and an edit of `pipelines/quick.yaml` re-runs exactly what
//! it reaches.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{sorted, stdout, Sandbox};

fn shipped_pipeline(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ci_pipeline() -> String {
    shipped_pipeline("ci.yaml")
}

/// Every artifact's bytes; CSV columns named `seconds` or `time` (wall clock, the one allowed
/// difference) are dropped first.
fn artifact_fingerprints(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let content = if path.extension().is_some_and(|e| e == "csv") {
                strip_clock_columns(&String::from_utf8_lossy(&bytes)).into_bytes()
            } else {
                bytes
            };
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(name, blake3::hash(&content).to_hex().to_string());
        }
    }
    out
}

fn strip_clock_columns(csv: &str) -> String {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let keep: Vec<bool> = header
        .split(',')
        .map(|c| c != "seconds" && c != "time")
        .collect();
    let pick = |line: &str| -> String {
        line.split(',')
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| v)
            .collect::<Vec<_>>()
            .join(",")
    };
    std::iter::once(pick(header))
        .chain(lines.map(pick))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ci_pipeline_is_reproducible_and_a_second_run_does_nothing() {
    let yaml = ci_pipeline();
    let first = Sandbox::new();
    let second = Sandbox::new();
    let a = first.run(&yaml);
    assert!(a.success(), "{:?}", a.reports);
    let b = second.run(&yaml);
    assert!(b.success(), "{:?}", b.reports);
    let (fa, fb) = (
        artifact_fingerprints(&first.artifacts()),
        artifact_fingerprints(&second.artifacts()),
    );
    assert!(fa.contains_key("report/report.html"), "{:?}", fa.keys());
    let differing: Vec<&String> = fa.keys().filter(|k| fa.get(*k) != fb.get(*k)).collect();
    assert!(
        differing.is_empty(),
        "artifacts differ between fresh caches: {differing:?}"
    );
    assert_eq!(fa.len(), fb.len());

    let again = first.run(&yaml);
    assert!(again.ran().is_empty(), "ran again: {:?}", again.ran());
}

/// `make run`'s pipeline: after a full run, raising the pruning stage's retraining epochs makes
/// `pipe status` name exactly the twelve pruning instances (and the report downstream of them),
/// and `pipe run` re-runs exactly those.
#[test]
fn editing_quick_yaml_reruns_exactly_the_pruning_and_the_report() {
    let yaml = shipped_pipeline("quick.yaml");
    let sandbox = Sandbox::new();
    assert!(sandbox.run(&yaml).success());
    let from = "levels: [50, 90, 100], retrain_epochs: 1";
    let edited = yaml.replace(from, "levels: [50, 90, 100], retrain_epochs: 2");
    assert_ne!(
        edited, yaml,
        "quick.yaml no longer has `{from}`; update this test"
    );
    sandbox.write(&edited);
    let status = stdout(&sandbox.cli(&["status", "pipeline.yaml"]));
    let changed: Vec<&str> = status
        .lines()
        .filter(|l| l.contains("will run (params changed: retrain_epochs)"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(changed.len(), 12, "{status}");
    assert!(changed.iter().all(|n| n.starts_with("prune[")), "{status}");
    let report_line = status
        .lines()
        .find(|l| l.starts_with("report "))
        .unwrap_or_default();
    assert!(report_line.contains("will run if"), "{status}");
    assert!(status.contains("13 of 36 instances would run"), "{status}");

    let rerun = sandbox.run(&edited);
    let mut expected: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    expected.push("report".into());
    expected.sort();
    assert_eq!(sorted(rerun.ran()), expected);
}

/// `pipelines/seeds.yaml` at a tiny scale (300 training strings, two seeds, two variants, one
/// epoch): the matrix over `seed` trains a different model per seed, and the report shows the
/// spread over the seeds.
#[test]
fn seeds_pipeline_repeats_each_variant_per_seed() {
    let sandbox = Sandbox::new();
    let head = |file: &str, lines: usize| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/thesis")
            .join(file);
        let text = std::fs::read_to_string(path).unwrap();
        let small: Vec<&str> = text.lines().take(lines + 1).collect();
        let target = sandbox.path().join(file);
        std::fs::write(&target, small.join("\n") + "\n").unwrap();
        target.display().to_string()
    };
    let train = head("train_data.csv", 300);
    let test = head("test_data.csv", 100);
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/seeds.yaml");
    let overrides = [
        format!("data.train={train}"),
        format!("data.test={test}"),
        "vars.variants=[rnn_tanh, gru]".into(),
        "vars.seeds=[0, 1]".into(),
        "base.epochs=1".into(),
        "base.hidden=8".into(),
        "base.embedding=8".into(),
        "prune.retrain_epochs=1".into(),
        "graphs.graphs_per_family=2".into(),
        "graphs.max_nodes=14".into(),
        "random.epochs=1".into(),
    ];
    let mut args = vec!["run".to_string(), pipeline.display().to_string()];
    for o in &overrides {
        args.push("-S".into());
        args.push(o.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = sandbox.cli(&args);
    assert!(
        output.status.success(),
        "{}",
        crate::common::stderr(&output)
    );
    let model = |seed: u32| {
        std::fs::read(
            sandbox
                .artifacts()
                .join(format!("base/gru-{seed}/model.safetensors")),
        )
        .unwrap()
    };
    assert_ne!(model(0), model(1), "two seeds trained the same model");
    let report = sandbox.read_artifact("report/report.html");
    assert!(report.contains(r#"<h2 id="seeds">"#), "no seed section");
    assert!(report.contains("(n = 2)"), "no spread over two seeds");
}
