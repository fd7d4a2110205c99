//! `rnn.prune` as a stage on a tiny pipeline: the outputs and their exact headers, pruned
//! weights exactly zero after retraining, same seed → same results, and the batched strategy
//! agreeing with one level at a time.

use std::collections::BTreeMap;

use pipe::nn::{ModelConfig, RecurrentModel, WeightKind};

use crate::common::Sandbox;

fn pipeline(strategy: &str) -> String {
    format!(
        "seed: 5\nstages:\n  data:\n    uses: data.reber\n    with: {{total: 600, test: {{count: 150}}}}\n  base:\n    uses: rnn.train\n    inputs: {{data: data.dataset}}\n    with: {{variant: gru, epochs: 2, hidden: 8, embedding: 4, layers: 2, batch_size: 16}}\n  prune:\n    uses: rnn.prune\n    inputs: {{model: base.model, config: base.config, data: data.dataset}}\n    with: {{weights: both, levels: [0, 50, 90, 100], retrain_epochs: 2, batch_size: 16, strategy: {strategy}}}\n"
    )
}

/// Curve rows keyed by (prune, epoch), without the `seconds` column.
fn curves(sandbox: &Sandbox) -> BTreeMap<(u32, u32), Vec<f64>> {
    let text = sandbox.read_artifact("prune/curves.csv");
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 8, "{line}");
            assert_eq!(fields[0], "both");
            let numbers = fields[3..7].iter().map(|f| f.parse().unwrap()).collect();
            (
                (fields[1].parse().unwrap(), fields[2].parse().unwrap()),
                numbers,
            )
        })
        .collect()
}

#[test]
fn prune_stage_writes_outputs_and_is_deterministic() {
    let a = Sandbox::new();
    a.run(&pipeline("batched"));
    let curves_text = a.read_artifact("prune/curves.csv");
    assert_eq!(
        curves_text.lines().next(),
        Some("weights,prune,epoch,train_loss,train_acc,test_loss,test_acc,seconds")
    );
    assert_eq!(curves_text.lines().count(), 1 + 4 * 3);
    let summary = a.read_artifact("prune/summary.csv");
    let mut lines = summary.lines();
    assert_eq!(
        lines.next(),
        Some("weights,prune,sparsity,acc_after_prune,best_acc_retrained,epochs_to_regain")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4);
    let sparsities: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert_eq!(sparsities[0], 0.0);
    assert!((sparsities[1] - 0.5).abs() < 0.01, "{sparsities:?}");
    assert!((sparsities[2] - 0.9).abs() < 0.01, "{sparsities:?}");
    assert!(sparsities[3] > 0.99, "{sparsities:?}");

    let safe: serde_json::Value =
        serde_json::from_str(&a.read_artifact("prune/safe.json")).unwrap();
    let unpruned = safe["unpruned_test_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&unpruned));
    // p = 0 removes nothing, so it is always within tolerance.
    assert!(safe["safe_level"].as_u64().is_some(), "{safe}");

    let config: ModelConfig = serde_json::from_str(&a.read_artifact("base/config.json")).unwrap();
    for level in [0, 50, 90, 100] {
        let path = a
            .artifacts()
            .join(format!("prune/models/p{level}.safetensors"));
        let model = RecurrentModel::load(config.clone(), &path).unwrap();
        for layer in 0..2 {
            for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                let weight = model.weight(layer, kind).unwrap();
                let mask = model.mask(layer, kind).unwrap();
                let leaked = Vec::<f32>::try_from(&weight.masked_select(&mask.eq(0.0))).unwrap();
                assert!(leaked.iter().all(|&w| w == 0.0), "p{level}: {leaked:?}");
            }
        }
    }

    let b = Sandbox::new();
    b.run(&pipeline("batched"));
    assert_eq!(b.read_artifact("prune/summary.csv"), summary);
    assert_eq!(
        b.read_artifact("prune/safe.json"),
        a.read_artifact("prune/safe.json")
    );
    assert_eq!(curves(&a), curves(&b));

    // One level at a time computes the same curves (the fused and loop cells and the batched
    // matmuls differ only in the last bits).
    let sequential = Sandbox::new();
    sequential.run(&pipeline("sequential"));
    let (batched, alone) = (curves(&a), curves(&sequential));
    assert_eq!(batched.len(), alone.len());
    for (key, values) in &batched {
        for (x, y) in values.iter().zip(&alone[key]) {
            assert!(
                (x - y).abs() < 1e-5,
                "{key:?}: {values:?} vs {:?}",
                alone[key]
            );
        }
    }
}
