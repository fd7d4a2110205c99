//! Checks the `nn` module against libtorch's own recurrent kernels and optimizer, and checks the
//! properties the pipeline relies on: exact masking, byte-identical reruns and resumes, and load
//! errors that name the offending tensor.

use std::path::Path;

use pipe_thesis_torch::nn::{
    cell::run_stack, evaluate, load_checkpoint, make_batch, save_checkpoint, train_epoch, Adam,
    AdamConfig, CellEngine, Example, ModelConfig, NnError, Readout, RecurrentModel,
    TrainingProgress, Variant, WeightKind,
};
use tch::nn::{OptimizerConfig, RNN};
use tch::{Kind, Tensor};

fn small_config(variant: Variant, layers: i64) -> ModelConfig {
    ModelConfig {
        embedding_dim: 5,
        hidden_size: 7,
        num_layers: layers,
        ..ModelConfig::thesis(variant)
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Copies our `rnn.*` parameters into a tch VarStore whose variables are named `weight_ih_l0`…
fn copy_into_var_store(model: &RecurrentModel, vs: &tch::nn::VarStore) {
    let variables = vs.variables();
    tch::no_grad(|| {
        for (name, value) in model.named_parameters() {
            if let Some(short) = name.strip_prefix("rnn.") {
                let mut target = variables[short].shallow_clone();
                target.copy_(&value);
            }
        }
    });
}

fn reference_params(model: &RecurrentModel) -> Vec<Tensor> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(name, _)| name.starts_with("rnn."))
        .map(|(_, t)| t)
        .collect()
}

/// Our loop and fused engines against libtorch's kernels: outputs within 1e-5, and for the loop
/// engine also the gradients of every recurrent parameter.
fn check_against_builtin(variant: Variant, layers: i64) {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let config = small_config(variant, layers);
    let model = RecurrentModel::new(config.clone(), 11).unwrap();
    let input = Tensor::randn([9, 4, 5], tch::kind::FLOAT_CPU);
    let weights = model.masked_layer_weights().unwrap();
    let ours = run_stack(variant, CellEngine::Loop, &input, &weights).unwrap();
    let fused = run_stack(variant, CellEngine::Fused, &input, &weights).unwrap();
    ours.sum(Kind::Float).backward();

    let zeros = Tensor::zeros([layers, 4, 7], tch::kind::FLOAT_CPU);
    let (reference, reference_grads) = match variant {
        Variant::Lstm | Variant::Gru => {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let rnn_config = tch::nn::RNNConfig {
                num_layers: layers,
                batch_first: false,
                ..Default::default()
            };
            let output = if variant == Variant::Lstm {
                let lstm = tch::nn::lstm(vs.root(), 5, 7, rnn_config);
                copy_into_var_store(&model, &vs);
                let state = tch::nn::LSTMState((zeros.shallow_clone(), zeros.shallow_clone()));
                lstm.seq_init(&input, &state).0
            } else {
                let gru = tch::nn::gru(vs.root(), 5, 7, rnn_config);
                copy_into_var_store(&model, &vs);
                gru.seq_init(&input, &tch::nn::GRUState(zeros.shallow_clone()))
                    .0
            };
            output.sum(Kind::Float).backward();
            let variables = vs.variables();
            let grads: Vec<(String, Tensor)> = variables
                .iter()
                .map(|(name, t)| (format!("rnn.{name}"), t.grad()))
                .collect();
            (output, grads)
        }
        Variant::RnnTanh | Variant::RnnRelu => {
            let params: Vec<Tensor> = reference_params(&model)
                .iter()
                .map(|t| t.detach().copy().set_requires_grad(true))
                .collect();
            let names: Vec<String> = model
                .named_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n.starts_with("rnn."))
                .collect();
            let output = if variant == Variant::RnnTanh {
                input
                    .rnn_tanh(&zeros, &params, true, layers, 0.0, true, false, false)
                    .0
            } else {
                input
                    .rnn_relu(&zeros, &params, true, layers, 0.0, true, false, false)
                    .0
            };
            output.sum(Kind::Float).backward();
            let grads = names
                .into_iter()
                .zip(params.iter().map(Tensor::grad))
                .collect();
            (output, grads)
        }
    };
    assert!(
        max_abs_diff(&ours, &reference) < 1e-5,
        "{variant} loop output"
    );
    assert!(
        max_abs_diff(&fused, &reference) < 1e-5,
        "{variant} fused output"
    );
    for (name, ours) in model.named_parameters() {
        if let Some((_, theirs)) = reference_grads.iter().find(|(n, _)| *n == name) {
            assert!(
                max_abs_diff(&ours.grad(), theirs) < 1e-5,
                "{variant} gradient of {name}"
            );
        }
    }
}

#[test]
fn lstm_matches_tch_lstm() {
    check_against_builtin(Variant::Lstm, 1);
    check_against_builtin(Variant::Lstm, 3);
}

#[test]
fn gru_matches_tch_gru() {
    check_against_builtin(Variant::Gru, 1);
    check_against_builtin(Variant::Gru, 3);
}

#[test]
fn rnn_tanh_matches_raw_rnn_tanh() {
    check_against_builtin(Variant::RnnTanh, 1);
    check_against_builtin(Variant::RnnTanh, 3);
}

#[test]
fn rnn_relu_matches_raw_rnn_relu() {
    check_against_builtin(Variant::RnnRelu, 1);
    check_against_builtin(Variant::RnnRelu, 3);
}

/// Tiny Reber-like data: random strings over the Reber letters, label = parity of 'T's.
fn tiny_data(count: usize, seed: u64) -> Vec<Example> {
    let letters = ['B', 'T', 'P', 'S', 'X', 'V', 'E'];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..count)
        .map(|_| {
            let length = 3 + next() % 6;
            let text: String = (0..length)
                .map(|_| letters[next() % letters.len()])
                .collect();
            let label = (text.matches('T').count() % 2) as i64;
            Example::from_text(&text, label)
        })
        .collect()
}

fn random_mask(shape: &[i64]) -> Tensor {
    Tensor::rand(shape, tch::kind::FLOAT_CPU)
        .ge(0.5)
        .to_kind(Kind::Float)
}

#[test]
fn masked_entries_get_zero_gradient_and_stay_zero() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let data = tiny_data(32, 3);
    for variant in Variant::ALL {
        for engine in [CellEngine::Loop, CellEngine::Fused] {
            let config = ModelConfig {
                engine,
                ..small_config(variant, 3)
            };
            let mut model = RecurrentModel::new(config, 5).unwrap();
            tch::manual_seed(99);
            for layer in 0..3 {
                for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                    let shape = model.weight(layer, kind).unwrap().size();
                    model.set_mask(layer, kind, &random_mask(&shape)).unwrap();
                }
            }
            let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
            let examples: Vec<&Example> = data.iter().collect();
            let batch = make_batch(&examples).unwrap();
            // Without re-applying masks after the steps: zero gradients and zero moments must
            // keep the masked weights at exactly 0.0 on their own.
            for _ in 0..5 {
                adam.zero_grad();
                let logits = model.forward(&batch).unwrap();
                let loss = pipe_thesis_torch::nn::cross_entropy(&logits, &batch.labels).unwrap();
                loss.backward();
                pipe_thesis_torch::nn::clip_grad_norm(&adam.gradients(), 5.0).unwrap();
                for layer in 0..3 {
                    for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                        let weight = model.weight(layer, kind).unwrap();
                        let removed = model.mask(layer, kind).unwrap().eq(0.0);
                        let grad = weight.grad();
                        let masked_grad = grad.masked_select(&removed);
                        assert_eq!(masked_grad.abs().max().double_value(&[]), 0.0);
                        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
                    }
                }
                adam.step().unwrap();
                for layer in 0..3 {
                    for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                        let weight = model.weight(layer, kind).unwrap();
                        let removed = model.mask(layer, kind).unwrap().eq(0.0);
                        let masked_values = weight.masked_select(&removed);
                        assert!(masked_values.numel() > 0);
                        assert_eq!(masked_values.abs().max().double_value(&[]), 0.0);
                    }
                }
            }
            // And through the training loop (which also re-applies the masks).
            train_epoch(&mut model, &mut adam, &data, 8, Some(5.0), 1, 0).unwrap();
            for layer in 0..3 {
                for kind in [WeightKind::InputToHidden, WeightKind::HiddenToHidden] {
                    let weight = model.weight(layer, kind).unwrap();
                    let removed = model.mask(layer, kind).unwrap().eq(0.0);
                    assert_eq!(
                        weight.masked_select(&removed).abs().max().double_value(&[]),
                        0.0
                    );
                }
            }
        }
    }
}

fn train_epochs(
    model: &mut RecurrentModel,
    adam: &mut Adam,
    data: &[Example],
    epochs: std::ops::Range<u64>,
) -> Vec<(f64, f64)> {
    epochs
        .map(|epoch| train_epoch(model, adam, data, 8, Some(5.0), 42, epoch).unwrap())
        .collect()
}

fn run_and_save(variant: Variant, dir: &Path) -> Vec<u8> {
    let data = tiny_data(64, 1);
    let mut model = RecurrentModel::new(
        ModelConfig {
            hidden_size: 8,
            ..small_config(variant, 2)
        },
        7,
    )
    .unwrap();
    let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
    train_epochs(&mut model, &mut adam, &data, 0..2);
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipe-nn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let dir = scratch_dir("identical");
    for variant in Variant::ALL {
        let first = run_and_save(variant, &dir.join("a").tap_create());
        let second = run_and_save(variant, &dir.join("b").tap_create());
        assert_eq!(first, second, "{variant}");
        // Different seeds must differ, or the test proves nothing.
        let other = RecurrentModel::new(small_config(variant, 2), 8).unwrap();
        let reference = RecurrentModel::new(small_config(variant, 2), 7).unwrap();
        assert!(
            max_abs_diff(
                &other.named_parameters()[1].1,
                &reference.named_parameters()[1].1
            ) > 0.0
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn resumed_training_is_byte_identical() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let cases = Variant::ALL
        .into_iter()
        .flat_map(|v| [(v, CellEngine::Loop), (v, CellEngine::Fused)]);
    for (variant, engine) in cases {
        let dir = scratch_dir(&format!("resume-{variant}-{engine:?}"));
        let data = tiny_data(64, 2);
        let test = tiny_data(16, 9);
        let config = ModelConfig {
            hidden_size: 8,
            readout: Readout::TrueLength,
            engine,
            ..small_config(variant, 2)
        };

        let mut model = RecurrentModel::new(config.clone(), 3).unwrap();
        let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
        let straight = train_epochs(&mut model, &mut adam, &data, 0..3);
        model.save(&dir.join("straight-model.safetensors")).unwrap();
        adam.save(&dir.join("straight-adam.safetensors")).unwrap();
        let straight_eval = evaluate(&model, &test, 8).unwrap();

        let checkpoints = dir.join("checkpoints");
        let mut model = RecurrentModel::new(config.clone(), 3).unwrap();
        let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
        let first = train_epochs(&mut model, &mut adam, &data, 0..1);
        let progress = TrainingProgress {
            epochs_done: 1,
            history: vec![],
        };
        save_checkpoint(&checkpoints, &model, &adam, &progress).unwrap();
        drop((model, adam));

        // A fresh process would build a model from another state; the checkpoint must win.
        let mut model = RecurrentModel::new(config.clone(), 12345).unwrap();
        let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
        let restored = load_checkpoint(&checkpoints, &mut model, &mut adam)
            .unwrap()
            .unwrap();
        assert_eq!(restored, progress);
        assert_eq!(adam.step_count(), 8);
        let rest = train_epochs(&mut model, &mut adam, &data, 1..3);
        model.save(&dir.join("resumed-model.safetensors")).unwrap();
        adam.save(&dir.join("resumed-adam.safetensors")).unwrap();

        let resumed: Vec<(f64, f64)> = first.into_iter().chain(rest).collect();
        assert_eq!(straight, resumed, "{variant} {engine:?} metrics");
        assert_eq!(straight_eval, evaluate(&model, &test, 8).unwrap());
        for file in ["model", "adam"] {
            let a = std::fs::read(dir.join(format!("straight-{file}.safetensors"))).unwrap();
            let b = std::fs::read(dir.join(format!("resumed-{file}.safetensors"))).unwrap();
            assert_eq!(a, b, "{variant} {engine:?} {file} bytes");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn empty_checkpoint_dir_means_fresh_start() {
    let dir = scratch_dir("fresh");
    let mut model = RecurrentModel::new(small_config(Variant::Gru, 1), 1).unwrap();
    let mut adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
    assert!(load_checkpoint(&dir.join("none"), &mut model, &mut adam)
        .unwrap()
        .is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn checkpoint_for_another_model_is_refused() {
    let dir = scratch_dir("other-model");
    let model = RecurrentModel::new(small_config(Variant::Gru, 1), 1).unwrap();
    let adam = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
    save_checkpoint(&dir, &model, &adam, &TrainingProgress::default()).unwrap();
    let mut other = RecurrentModel::new(small_config(Variant::Lstm, 1), 1).unwrap();
    let mut other_adam = Adam::new(other.named_parameters(), AdamConfig::default()).unwrap();
    let error = load_checkpoint(&dir, &mut other, &mut other_adam).unwrap_err();
    assert!(matches!(error, NnError::Checkpoint { .. }), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn adam_matches_tch_adam() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    tch::manual_seed(4);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let weight = vs.root().var(
        "weight",
        &[6, 4],
        tch::nn::Init::Uniform { lo: -1.0, up: 1.0 },
    );
    let bias = vs
        .root()
        .var("bias", &[6], tch::nn::Init::Uniform { lo: -1.0, up: 1.0 });
    let our_weight = weight.detach().copy().set_requires_grad(true);
    let our_bias = bias.detach().copy().set_requires_grad(true);
    let mut ours = Adam::new(
        vec![
            ("weight".to_string(), our_weight.shallow_clone()),
            ("bias".to_string(), our_bias.shallow_clone()),
        ],
        AdamConfig::default(),
    )
    .unwrap();
    let mut theirs = tch::nn::Adam::default().build(&vs, 1e-3).unwrap();
    let inputs = Tensor::randn([10, 4], tch::kind::FLOAT_CPU);
    let targets = Tensor::randn([10, 6], tch::kind::FLOAT_CPU);
    let loss = |w: &Tensor, b: &Tensor| {
        (inputs.linear(w, Some(b)) - &targets)
            .pow_tensor_scalar(2)
            .mean(Kind::Float)
    };
    for _ in 0..10 {
        theirs.zero_grad();
        loss(&weight, &bias).backward();
        theirs.step();
        ours.zero_grad();
        loss(&our_weight, &our_bias).backward();
        ours.step().unwrap();
        assert!(max_abs_diff(&weight, &our_weight) < 1e-6);
        assert!(max_abs_diff(&bias, &our_bias) < 1e-6);
    }
    // The parameters did move, so the comparison is not vacuous.
    assert!(ours.step_count() == 10);
}

#[test]
fn true_length_readout_ignores_padding() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    for variant in Variant::ALL {
        let config = ModelConfig {
            readout: Readout::TrueLength,
            ..small_config(variant, 2)
        };
        let model = RecurrentModel::new(config, 2).unwrap();
        let long = Example::from_text("BTSSXXTVVE", 1);
        let short = Example::from_text("BPVE", 0);
        let together = model
            .forward(&make_batch(&[&long, &short]).unwrap())
            .unwrap();
        let alone = model.forward(&make_batch(&[&short]).unwrap()).unwrap();
        assert!(
            max_abs_diff(&together.get(1), &alone.get(0)) < 1e-6,
            "{variant}"
        );
    }
}

#[test]
fn last_padded_readout_reads_the_final_padded_step() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let model = RecurrentModel::new(small_config(Variant::Lstm, 2), 2).unwrap();
    let long = Example::from_text("BTSSXXTVVE", 1);
    let short = Example::from_text("BPVE", 0);
    let together = model
        .forward(&make_batch(&[&long, &short]).unwrap())
        .unwrap();
    let padded = Example {
        codes: [short.codes.clone(), vec![0; 6]].concat(),
        label: 0,
    };
    let alone = model.forward(&make_batch(&[&padded]).unwrap()).unwrap();
    assert!(max_abs_diff(&together.get(1), &alone.get(0)) < 1e-6);
}

fn saved_tensors(model: &RecurrentModel, dir: &Path) -> Vec<(String, Tensor)> {
    let path = dir.join("full.safetensors");
    model.save(&path).unwrap();
    Tensor::read_safetensors(&path).unwrap()
}

#[test]
fn save_load_round_trip_and_named_errors() {
    let _torch = pipe_thesis_torch::nn::TorchThreads::acquire(1);
    let dir = scratch_dir("load-errors");
    let config = small_config(Variant::Lstm, 2);
    let mut model = RecurrentModel::new(config.clone(), 1).unwrap();
    model
        .set_mask(1, WeightKind::HiddenToHidden, &random_mask(&[28, 7]))
        .unwrap();
    let tensors = saved_tensors(&model, &dir);
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    // The header lists (and the data section stores) tensors in sorted name order.
    let bytes = std::fs::read(dir.join("full.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let mut sorted = names.clone();
    sorted.sort();
    let positions: Vec<usize> = sorted
        .iter()
        .map(|n| header.find(&format!("\"{n}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{header}");
    assert!(names.contains(&"rnn.weight_ih_l0") && names.contains(&"mask.rnn.weight_hh_l1"));
    assert!(names.contains(&"embedding.weight") && names.contains(&"head.bias"));

    let loaded = RecurrentModel::load(config.clone(), &dir.join("full.safetensors")).unwrap();
    for ((name, a), (_, b)) in model
        .named_parameters()
        .into_iter()
        .chain(model.named_masks())
        .zip(
            loaded
                .named_parameters()
                .into_iter()
                .chain(loaded.named_masks()),
        )
    {
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{name}");
    }

    let missing: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(n, _)| n != "rnn.bias_hh_l1")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let path = dir.join("missing.safetensors");
    Tensor::write_safetensors(&missing, &path).unwrap();
    match RecurrentModel::load(config.clone(), &path) {
        Err(NnError::MissingTensor { name, .. }) => assert_eq!(name, "rnn.bias_hh_l1"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }

    let reshaped: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = if n == "rnn.weight_hh_l0" {
                Tensor::zeros([28, 6], tch::kind::FLOAT_CPU)
            } else {
                t.shallow_clone()
            };
            (n.clone(), t)
        })
        .collect();
    let path = dir.join("shape.safetensors");
    Tensor::write_safetensors(&reshaped, &path).unwrap();
    let error = RecurrentModel::load(config.clone(), &path).unwrap_err();
    match &error {
        NnError::WrongShape {
            name,
            found,
            expected,
            ..
        } => {
            assert_eq!(name, "rnn.weight_hh_l0");
            assert_eq!(found, &vec![28, 6]);
            assert_eq!(expected, &vec![28, 7]);
        }
        other => panic!("expected WrongShape, got {other:?}"),
    }
    assert!(
        error.to_string().contains("rnn.weight_hh_l0") && error.to_string().contains("[28, 7]")
    );

    let mut extra: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    extra.push((
        "rnn.weight_ih_l2".to_string(),
        Tensor::zeros([28, 7], tch::kind::FLOAT_CPU),
    ));
    let path = dir.join("extra.safetensors");
    Tensor::write_safetensors(&extra, &path).unwrap();
    assert!(matches!(
        RecurrentModel::load(config.clone(), &path),
        Err(NnError::UnexpectedTensor { name, .. }) if name == "rnn.weight_ih_l2"
    ));

    assert!(matches!(
        RecurrentModel::load(config, &dir.join("absent.safetensors")),
        Err(NnError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(dir);
}
