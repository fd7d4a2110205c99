//! `rnn.prune` as a stage on a tiny pipeline: the outputs and their exact headers, pruned
//! weights exactly zero after retraining, same seed → same results, and the batched strategy
//! agreeing with one level at a time.

use std::collections::BTreeMap;

use pipe_thesis_torch::nn::{ModelConfig, RecurrentModel, WeightKind};

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

/// Every stored pruned model has exactly zero weights wherever its mask is zero.
fn assert_pruned_weights_stay_zero(sandbox: &Sandbox) {
    let config: ModelConfig =
        serde_json::from_str(&sandbox.read_artifact("base/config.json")).unwrap();
    for level in [0, 50, 90, 100] {
        let path = sandbox
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
}

/// Largest difference between two runs' curves (same rows required).
fn largest_difference(
    a: &BTreeMap<(u32, u32), Vec<f64>>,
    b: &BTreeMap<(u32, u32), Vec<f64>>,
) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(key, values)| values.iter().zip(&b[key]).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max)
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

    assert_pruned_weights_stay_zero(&a);

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
    let difference = largest_difference(&curves(&a), &curves(&sequential));
    assert!(difference < 1e-5, "batched vs sequential: {difference}");

    // So do the native kernels (here with an embedding narrower than the hidden layers), and
    // their stored models keep pruned weights at zero.
    let native = Sandbox::new();
    native.run(&pipeline("native"));
    let difference = largest_difference(&curves(&native), &curves(&sequential));
    assert!(difference < 1e-4, "native vs sequential: {difference}");
    assert_pruned_weights_stay_zero(&native);
}

/// A pruned stacked model retrained natively follows libtorch's `train_epoch` for every variant
/// and readout: same losses, same parameters, pruned weights still zero.
#[test]
fn native_retraining_follows_libtorch_for_every_variant() {
    use pipe::data::{generate, GeneratorParams, Split, TestSize};
    use pipe_thesis_torch::nn::native::{NativeBatch, NativeNetwork};
    use pipe_thesis_torch::nn::{
        epoch_order, magnitude_masks, pruned_copy, train_epoch, Adam, AdamConfig, CellEngine,
        EmbeddingInit, Example, PruneTarget, Readout, ThresholdScope, Variant,
    };

    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data: Vec<Example> = generate(&GeneratorParams {
        total: 120,
        test: TestSize::Count(0),
        seed: 3,
        ..GeneratorParams::default()
    })
    .unwrap()
    .split_rows(Split::Train)
    .map(|row| Example::from_text(&row.string, i64::from(row.valid)))
    .collect();
    let adam_config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    for variant in Variant::ALL {
        for readout in [Readout::LastPadded, Readout::TrueLength] {
            let config = ModelConfig {
                variant,
                vocab_size: 128,
                embedding_dim: 5,
                hidden_size: 7,
                num_layers: 2,
                num_classes: 2,
                readout,
                engine: CellEngine::fastest_on_cpu(variant),
                embedding_init: EmbeddingInit::Normal,
            };
            let base = RecurrentModel::new(config, 11).unwrap();
            let masks =
                magnitude_masks(&base, PruneTarget::Both, ThresholdScope::Global, 60.0).unwrap();
            let mut reference = pruned_copy(&base, &masks).unwrap();
            let mut native = NativeNetwork::from_model(&reference).unwrap();
            let mut adam = Adam::new(reference.named_parameters(), adam_config).unwrap();
            for epoch in 0..2 {
                let (loss, accuracy) =
                    train_epoch(&mut reference, &mut adam, &data, 16, Some(1.0), 7, epoch).unwrap();
                let order = epoch_order(data.len(), 7, epoch);
                let batches = NativeBatch::all(&data, &order, 16).unwrap();
                let pass = native.train_epoch(&batches, Some(1.0), &adam_config);
                assert!(
                    (pass.loss - loss).abs() < 1e-4 && pass.accuracy == accuracy,
                    "{variant} {readout:?} epoch {epoch}: {pass:?} vs ({loss}, {accuracy})"
                );
            }
            let retrained = pruned_copy(&base, &masks).unwrap();
            native.write_parameters_into(&retrained).unwrap();
            for ((name, expected), (_, found)) in reference
                .named_parameters()
                .iter()
                .zip(retrained.named_parameters())
            {
                let worst = (expected - &found).abs().max().double_value(&[]);
                assert!(worst < 1e-4, "{variant} {readout:?} {name}: {worst}");
            }
            for layer in 0..2 {
                for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                    let weight = retrained.weight(layer, kind).unwrap();
                    let mask = retrained.mask(layer, kind).unwrap();
                    let leaked = weight
                        .masked_select(&mask.eq(0.0))
                        .abs()
                        .sum(tch::Kind::Float);
                    assert_eq!(leaked.double_value(&[]), 0.0, "{variant} layer {layer}");
                }
            }
        }
    }
}
