//! Randomly structured networks (thesis experiment 3): the batched, skip-fused group computes
//! what each network computes alone (outputs, gradients, training), padding stays inert, and
//! `rnn.train_random` is deterministic and resumes after a kill.

use pipe::data::{generate, GeneratorParams, Split, TestSize};
use pipe::graph::{Graph, GraphFamily};
use pipe_thesis_torch::nn::native::{Isa, NativeBatch, NativeNetwork};
use pipe_thesis_torch::nn::random::{
    clip_grad_norm_per_network, per_network_cross_entropy, NetworkGroup, NetworkStructure,
    RandomNetwork,
};
use pipe_thesis_torch::nn::{
    clip_grad_norm, cross_entropy, make_batch, Adam, AdamConfig, Example, Readout,
};
use pipe_thesis_torch::nn::{
    magnitude_masks, pruned_copy, Batch, ModelConfig, PruneTarget, RecurrentModel, ThresholdScope,
    Variant,
};
use tch::{Kind, Tensor};

use crate::common::{run_and_kill_at_checkpoint, stdout, Sandbox};

/// Four different small graphs: skips of several lengths, several sources, different depths.
fn graphs() -> Vec<Graph> {
    let g = |id, n, edges: &[(usize, usize)]| {
        Graph::new(id, GraphFamily::BarabasiAlbert, n, edges.iter().copied()).unwrap()
    };
    vec![
        // 4 layers, skips 0→2, 0→3, 1→3.
        g(
            0,
            6,
            &[
                (0, 1),
                (1, 2),
                (2, 3),
                (0, 2),
                (0, 3),
                (1, 3),
                (1, 4),
                (4, 5),
                (0, 5),
            ],
        ),
        // Two sources, 3 layers, a skip 0→2.
        g(1, 5, &[(0, 2), (1, 2), (2, 3), (1, 3), (3, 4), (0, 4)]),
        // A chain of 5 layers with a long skip 0→4, and 1→3: slot 1 of layer 3 reads layer 1
        // here but layer 0 in the first graph.
        g(
            2,
            5,
            &[(0, 1), (1, 2), (2, 3), (3, 4), (0, 4), (2, 4), (1, 3)],
        ),
        // 2 layers only, wide.
        g(3, 6, &[(0, 3), (1, 3), (2, 4), (0, 5), (2, 5)]),
    ]
}

fn examples(total: usize) -> Vec<Example> {
    let params = GeneratorParams {
        total,
        test: TestSize::Count(0),
        seed: 5,
        ..GeneratorParams::default()
    };
    generate(&params)
        .unwrap()
        .split_rows(Split::Train)
        .map(|row| Example::from_text(&row.string, i64::from(row.valid)))
        .collect()
}

fn networks(variant: Variant, readout: Readout) -> Vec<RandomNetwork> {
    graphs()
        .iter()
        .map(|g| {
            let structure = NetworkStructure::from_graph(g).unwrap();
            RandomNetwork::new(structure, variant, readout, 100 + g.id as u64).unwrap()
        })
        .collect()
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    a.f_sub(b).unwrap().abs().max().double_value(&[])
}

fn batch(data: &[Example], range: std::ops::Range<usize>) -> Batch {
    let refs: Vec<&Example> = data[range].iter().collect();
    make_batch(&refs).unwrap()
}

#[test]
fn group_outputs_and_gradients_equal_each_network_alone() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = examples(200);
    let batch = batch(&data, 0..24);
    for variant in Variant::ALL {
        for readout in [Readout::LastPadded, Readout::TrueLength] {
            let alone = networks(variant, readout);
            let group = NetworkGroup::from_networks(&alone).unwrap();
            let logits = group.forward(&batch).unwrap();
            per_network_cross_entropy(&logits, &batch.labels)
                .unwrap()
                .sum(Kind::Float)
                .backward();
            let group_grads: Vec<Tensor> = group
                .named_parameters()
                .iter()
                .map(|(_, t)| t.grad())
                .collect();
            for (k, network) in alone.iter().enumerate() {
                let own = network.forward(&batch).unwrap();
                let difference = max_difference(&own, &logits.get(k as i64));
                assert!(
                    difference < 1e-5,
                    "{variant} {readout:?} network {k}: logits differ by {difference}"
                );
                cross_entropy(&own, &batch.labels).unwrap().backward();
                let mapped = group.member_tensors(k, &group_grads).unwrap();
                for ((name, param), grad) in network.named_parameters().iter().zip(&mapped) {
                    let difference = max_difference(&param.grad(), grad);
                    assert!(
                        difference < 1e-5,
                        "{variant} {readout:?} network {k} {name}: gradients differ by {difference}"
                    );
                }
            }
        }
    }
}

#[test]
fn training_a_group_matches_training_each_network_alone_and_padding_stays_zero() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = examples(300);
    for variant in [Variant::RnnTanh, Variant::Lstm, Variant::Gru] {
        let alone = networks(variant, Readout::LastPadded);
        let group = NetworkGroup::from_networks(&alone).unwrap();
        let config = AdamConfig {
            lr: 0.01,
            ..AdamConfig::default()
        };
        let mut group_adam = Adam::new(group.named_parameters(), config).unwrap();
        let mut adams: Vec<Adam> = alone
            .iter()
            .map(|n| Adam::new(n.named_parameters(), config).unwrap())
            .collect();
        // A small clip norm so that clipping is active for some networks and not others.
        let clip = 1.0;
        for step in 0..4 {
            let batch = batch(&data, step * 32..(step + 1) * 32);
            group_adam.zero_grad();
            let losses =
                per_network_cross_entropy(&group.forward(&batch).unwrap(), &batch.labels).unwrap();
            losses.sum(Kind::Float).backward();
            let group_norms =
                clip_grad_norm_per_network(&group_adam.gradients(), group.len(), clip).unwrap();
            group_adam.step().unwrap();
            for (k, (network, adam)) in alone.iter().zip(adams.iter_mut()).enumerate() {
                adam.zero_grad();
                let loss = cross_entropy(&network.forward(&batch).unwrap(), &batch.labels).unwrap();
                loss.backward();
                let norm = clip_grad_norm(&adam.gradients(), clip).unwrap();
                adam.step().unwrap();
                let group_loss = losses.double_value(&[k as i64]);
                let own_loss = loss.double_value(&[]);
                assert!(
                    (group_loss - own_loss).abs() < 1e-5,
                    "{variant} step {step} network {k}: loss {group_loss} vs {own_loss}"
                );
                assert!(
                    (group_norms[k] - norm).abs() < 1e-4 * norm.max(1.0),
                    "{variant} step {step} network {k}: grad norm {} vs {norm}",
                    group_norms[k]
                );
            }
        }
        // Parameters after training agree, and nothing outside the members' entries moved.
        let group_params: Vec<Tensor> = group
            .named_parameters()
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect();
        let mut member_entries = 0i64;
        for (k, network) in alone.iter().enumerate() {
            let mapped = group.member_tensors(k, &group_params).unwrap();
            for ((name, param), value) in network.named_parameters().iter().zip(&mapped) {
                let difference = max_difference(param, value);
                assert!(
                    difference < 1e-4,
                    "{variant} network {k} {name}: parameters differ by {difference}"
                );
                member_entries += value.numel() as i64;
            }
        }
        let nonzero: i64 = group_params
            .iter()
            .map(|t| t.ne(0.0).sum(Kind::Int64).int64_value(&[]))
            .sum();
        assert!(
            nonzero <= member_entries,
            "{variant}: {nonzero} nonzero group entries but members own only {member_entries}"
        );
    }
}

fn pipeline(epochs: usize) -> String {
    pipeline_with(epochs, "group_size: 2")
}

fn pipeline_with(epochs: usize, options: &str) -> String {
    format!(
        "seed: 4\nstages:\n  data:\n    uses: data.reber\n    with: {{total: 600, test: {{count: 150}}}}\n  graphs:\n    uses: graph.random\n    with: {{graphs_per_family: 3, min_nodes: 10, max_nodes: 12}}\n  train:\n    uses: rnn.train_random\n    inputs: {{graphs: graphs.graphs, data: data.dataset}}\n    with: {{variant: gru, epochs: {epochs}, batch_size: 32, limit: 2, {options}}}\n"
    )
}

/// With the native engine a network's numbers depend only on it and the data: other group sizes
/// and thread counts give the same bytes; the tensor engine learns the same to float precision.
#[test]
fn native_results_do_not_depend_on_grouping_or_threads_and_agree_with_the_tensor_engine() {
    let runs: Vec<Sandbox> = [
        "group_size: 1, threads: 1",
        "group_size: 4, threads: 2",
        "group_size: 4, engine: tensor",
    ]
    .iter()
    .map(|options| {
        let sandbox = Sandbox::new();
        sandbox.run(&pipeline_with(2, options));
        sandbox
    })
    .collect();
    let native = runs[0].read_artifact("train/metrics.csv");
    assert_eq!(native, runs[1].read_artifact("train/metrics.csv"));
    let tensor = runs[2].read_artifact("train/metrics.csv");
    for (a, b) in native.lines().zip(tensor.lines()).skip(1) {
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
        assert_eq!(a[..2], b[..2]);
        for (x, y) in a[2..].iter().zip(&b[2..]) {
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (x - y).abs() < 1e-3 * x.abs().max(1.0),
                "native {a:?} vs tensor {b:?}"
            );
        }
    }
}

/// The CSV without its `seconds` column (the one wall-clock field).
fn without_seconds(csv: &str) -> String {
    csv.lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(',').collect();
            fields.pop();
            fields.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn train_random_is_deterministic_and_writes_the_thesis_columns() {
    let a = Sandbox::new();
    let b = Sandbox::new();
    a.run(&pipeline(2));
    b.run(&pipeline(2));
    let results = a.read_artifact("train/results.csv");
    assert_eq!(
        without_seconds(&results),
        without_seconds(&b.read_artifact("train/results.csv"))
    );
    assert_eq!(
        a.read_artifact("train/metrics.csv"),
        b.read_artifact("train/metrics.csv")
    );
    let mut lines = results.lines();
    assert_eq!(
        lines.next(),
        Some("id,family,test_acc,test_loss,train_acc,seconds")
    );
    // limit 2 of each family.
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{results}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains("barabasi_albert"))
            .count(),
        2
    );
    let metrics = a.read_artifact("train/metrics.csv");
    assert_eq!(
        metrics.lines().next(),
        Some("id,epoch,train_loss,train_acc,test_loss,test_acc")
    );
    assert_eq!(metrics.lines().count(), 1 + 4 * 2);
}

#[test]
fn killed_train_random_resumes_finished_groups_and_ends_identical() {
    let epochs = 3;
    let reference = Sandbox::new();
    reference.run(&pipeline(epochs));

    let sandbox = Sandbox::new();
    sandbox.write(&pipeline(epochs));
    let finished_before_kill = run_and_kill_at_checkpoint(&sandbox, "group-00000.json");

    let output = sandbox.cli(&["-v", "run", "pipeline.yaml"]);
    assert!(output.status.success(), "{}", stdout(&output));
    if finished_before_kill < 3 {
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains("resumed"), "{log}");
    }
    assert_eq!(
        without_seconds(&sandbox.read_artifact("train/results.csv")),
        without_seconds(&reference.read_artifact("train/results.csv"))
    );
    assert_eq!(
        sandbox.read_artifact("train/metrics.csv"),
        reference.read_artifact("train/metrics.csv")
    );
}

fn native_batch(data: &[Example], range: std::ops::Range<usize>) -> NativeBatch {
    let refs: Vec<&Example> = data[range].iter().collect();
    NativeBatch::new(&refs).unwrap()
}

/// The native kernels compute the reference's logits and gradients for every variant, readout
/// and structure (skips, several sources, one-layer-deep).
#[test]
fn native_outputs_and_gradients_equal_the_reference() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = examples(200);
    let reference_batch = batch(&data, 0..24);
    let batch = native_batch(&data, 0..24);
    for variant in Variant::ALL {
        for readout in [Readout::LastPadded, Readout::TrueLength] {
            for (k, network) in networks(variant, readout).iter().enumerate() {
                let mut native = NativeNetwork::from_reference(network, readout).unwrap();
                let logits = native.forward(&batch).to_vec();
                native.backward(&batch);
                let own = network.forward(&reference_batch).unwrap();
                // Reference logits are [B, 2]; native ones class-major [2 × B].
                let reference_logits =
                    Vec::<f32>::try_from(&own.transpose(0, 1).contiguous().reshape([-1])).unwrap();
                let worst = logits
                    .iter()
                    .zip(&reference_logits)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{variant} {readout:?} network {k}: logits differ by {worst}"
                );
                cross_entropy(&own, &reference_batch.labels)
                    .unwrap()
                    .backward();
                let mut offset = 0;
                for (name, param) in network.named_parameters() {
                    let grad = Vec::<f32>::try_from(&param.grad().reshape([-1])).unwrap();
                    let native_grad = &native.gradients()[offset..offset + grad.len()];
                    offset += grad.len();
                    let scale = grad.iter().fold(1e-3f32, |m, g| m.max(g.abs()));
                    let worst = grad
                        .iter()
                        .zip(native_grad)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-5 * scale.max(1.0),
                        "{variant} {readout:?} network {k} {name}: gradients differ by {worst} (largest {scale})"
                    );
                }
                assert_eq!(offset, native.gradients().len());
            }
        }
    }
}

/// Training natively (clipping active, Adam) follows training the reference step by step.
#[test]
fn native_training_follows_the_reference() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = examples(300);
    let config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    for variant in Variant::ALL {
        for (k, network) in networks(variant, Readout::LastPadded).iter().enumerate() {
            let mut native = NativeNetwork::from_reference(network, Readout::LastPadded).unwrap();
            let mut adam = Adam::new(network.named_parameters(), config).unwrap();
            for step in 0..4 {
                let reference_batch = batch(&data, step * 32..(step + 1) * 32);
                adam.zero_grad();
                let loss = cross_entropy(
                    &network.forward(&reference_batch).unwrap(),
                    &reference_batch.labels,
                )
                .unwrap();
                loss.backward();
                clip_grad_norm(&adam.gradients(), 1.0).unwrap();
                adam.step().unwrap();
                let outcome = native.train_batch(
                    &native_batch(&data, step * 32..(step + 1) * 32),
                    Some(1.0),
                    &config,
                );
                let own_loss = loss.double_value(&[]);
                assert!(
                    (outcome.loss - own_loss).abs() < 1e-5,
                    "{variant} step {step} network {k}: loss {} vs {own_loss}",
                    outcome.loss
                );
            }
            let reference: Vec<f32> = network
                .named_parameters()
                .iter()
                .flat_map(|(_, t)| Vec::<f32>::try_from(&t.reshape([-1])).unwrap())
                .collect();
            let worst = reference
                .iter()
                .zip(native.parameters())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{variant} network {k}: parameters differ by {worst}"
            );
        }
    }
}

/// Trains `network` three steps on `isa` and returns the bits of its parameters and last logits.
fn bits_after_training(mut network: NativeNetwork, isa: Isa, data: &[Example]) -> Vec<u32> {
    network.set_isa(isa).unwrap();
    let config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    for step in 0..3 {
        network.train_batch(
            &native_batch(data, step * 40..(step + 1) * 40),
            Some(1.0),
            &config,
        );
    }
    let logits = network.forward(&native_batch(data, 120..170)).to_vec();
    network
        .parameters()
        .iter()
        .chain(&logits)
        .map(|v| v.to_bits())
        .collect()
}

/// A 2-layer stacked model whose widths are not multiples of the kernels' blocks (rows of 4,
/// lanes of 16 and 32), so every kernel's remainder path runs.
fn odd_width_model(variant: Variant) -> ModelConfig {
    ModelConfig {
        hidden_size: 21,
        embedding_dim: 13,
        num_layers: 2,
        ..ModelConfig::thesis(variant)
    }
}

/// Every instruction-set build of the native kernels (AVX-512, AVX2+FMA, portable) gives the
/// same bits, for the sparse kernels of random networks and the dense ones of the stacked
/// (pruned) model, so a result does not depend on the machine it ran on.
#[test]
fn every_isa_path_is_bit_identical_to_the_portable_one() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let supported = Isa::supported();
    // Visible in the test log: which paths this CPU let the test compare.
    eprintln!(
        "comparing the native kernels' paths {:?} against portable",
        supported
    );
    if supported == [Isa::Portable] {
        eprintln!("skipped: this CPU runs only the portable path, nothing to compare");
        return;
    }
    let data = examples(200);
    for variant in Variant::ALL {
        let mut candidates: Vec<(String, Box<dyn Fn() -> NativeNetwork>)> = Vec::new();
        for (k, network) in networks(variant, Readout::TrueLength)
            .into_iter()
            .enumerate()
        {
            candidates.push((
                format!("random network {k}"),
                Box::new(move || {
                    NativeNetwork::from_reference(&network, Readout::TrueLength).unwrap()
                }),
            ));
        }
        // The stacked model, pruned so its masks are mixed.
        let base = RecurrentModel::new(odd_width_model(variant), 3).unwrap();
        let masks =
            magnitude_masks(&base, PruneTarget::Both, ThresholdScope::Global, 40.0).unwrap();
        let model = pruned_copy(&base, &masks).unwrap();
        candidates.push((
            "pruned stacked model".into(),
            Box::new(move || NativeNetwork::from_model(&model).unwrap()),
        ));
        for (name, build) in &candidates {
            let portable = bits_after_training(build(), Isa::Portable, &data);
            for &isa in &supported {
                assert!(
                    bits_after_training(build(), isa, &data) == portable,
                    "{variant} {name}: the {isa} path differs from the portable one"
                );
            }
        }
    }
}

#[test]
fn an_isa_this_cpu_lacks_is_refused() {
    let network = &networks(Variant::Gru, Readout::LastPadded)[0];
    let mut native = NativeNetwork::from_reference(network, Readout::LastPadded).unwrap();
    for isa in Isa::ALL {
        assert_eq!(native.set_isa(isa).is_ok(), isa.is_supported(), "{isa}");
    }
    assert_eq!(native.isa(), Isa::Portable);
}

/// A pruned model multiplied as dense matrices (its zeros included) and term by term (masked
/// weights skipped) trains to the same bits, at a mixed and at a complete pruning level.
#[test]
fn a_pruned_model_gives_the_same_bits_dense_or_term_by_term() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = examples(200);
    let isa = Isa::best();
    for variant in Variant::ALL {
        let base = RecurrentModel::new(odd_width_model(variant), 5).unwrap();
        for (target, level) in [(PruneTarget::Both, 80.0), (PruneTarget::Hh, 100.0)] {
            let masks = magnitude_masks(&base, target, ThresholdScope::Global, level).unwrap();
            let model = pruned_copy(&base, &masks).unwrap();
            let dense = bits_after_training(NativeNetwork::from_model(&model).unwrap(), isa, &data);
            let mut term_by_term = NativeNetwork::from_model(&model).unwrap();
            term_by_term.set_dense(false);
            assert!(
                bits_after_training(term_by_term, isa, &data) == dense,
                "{variant}, {} pruned {level} %: the two ways differ",
                target.name()
            );
        }
    }
}
