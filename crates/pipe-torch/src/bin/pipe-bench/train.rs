//! Times one training epoch of the thesis configuration (E = 50, H = 50, 3 layers, batch 32,
//! Adam, clip 5) per variant: the native kernels and our libtorch masked cells (hand-written loop
//! and the fused kernels on masked weights) against tch's built-in recurrent layers, on 1 thread.
//!
//! `pipe-bench train [sequences]` (default 2,000 random sequences of lengths 11..53 over the 7
//! Reber letters); the per-epoch time scales linearly to the thesis's 18,750 training sequences.

use std::time::Instant;

use pipe_thesis_torch::nn::native::{NativeBatch, NativeNetwork};
use pipe_thesis_torch::nn::{
    epoch_order, train_epoch, Adam, AdamConfig, CellEngine, Example, ModelConfig, RecurrentModel,
    Variant,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{Module, OptimizerConfig, RNN};
use tch::{Kind, Tensor};

const BATCH_SIZE: usize = 32;
const CLIP_NORM: f64 = 5.0;

pub fn synthetic_reber_like(count: usize, seed: u64) -> Vec<Example> {
    let letters = ['B', 'T', 'P', 'S', 'X', 'V', 'E'];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let length = rng.random_range(11..=53);
            let text: String = (0..length)
                .map(|_| letters[rng.random_range(0..letters.len())])
                .collect();
            Example::from_text(&text, rng.random_range(0..2))
        })
        .collect()
}

fn time_masked(
    variant: Variant,
    engine: CellEngine,
    data: &[Example],
) -> Result<f64, Box<dyn std::error::Error>> {
    let config = ModelConfig {
        engine,
        ..ModelConfig::thesis(variant)
    };
    let mut model = RecurrentModel::new(config, 1)?;
    let mut adam = Adam::new(model.named_parameters(), AdamConfig::default())?;
    let start = Instant::now();
    train_epoch(
        &mut model,
        &mut adam,
        data,
        BATCH_SIZE,
        Some(CLIP_NORM),
        1,
        0,
    )?;
    Ok(start.elapsed().as_secs_f64())
}

/// The same epoch on the native kernels (`nn::native`), batches built beforehand as
/// `rnn.train` builds them once per epoch.
fn time_native(variant: Variant, data: &[Example]) -> Result<f64, Box<dyn std::error::Error>> {
    let config = ModelConfig {
        engine: CellEngine::Loop,
        ..ModelConfig::thesis(variant)
    };
    let mut network = NativeNetwork::from_model(&RecurrentModel::new(config, 1)?)?;
    let start = Instant::now();
    let batches = NativeBatch::all(data, &epoch_order(data.len(), 1, 0), BATCH_SIZE)?;
    network.train_epoch(&batches, Some(CLIP_NORM), &AdamConfig::default());
    Ok(start.elapsed().as_secs_f64())
}

/// The same epoch written the plain tch way: VarStore, nn::embedding, nn::lstm/gru or the raw
/// rnn_tanh/rnn_relu op, nn::linear, tch's Adam with clip_grad_norm.
fn time_builtin(variant: Variant, data: &[Example]) -> Result<f64, Box<dyn std::error::Error>> {
    tch::manual_seed(1);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let embedding = tch::nn::embedding(&root / "embedding", 128, 50, Default::default());
    let rnn_config = tch::nn::RNNConfig {
        num_layers: 3,
        batch_first: false,
        ..Default::default()
    };
    let lstm = (variant == Variant::Lstm).then(|| tch::nn::lstm(&root / "rnn", 50, 50, rnn_config));
    let gru = (variant == Variant::Gru).then(|| tch::nn::gru(&root / "rnn", 50, 50, rnn_config));
    let mut raw_params = Vec::new();
    if matches!(variant, Variant::RnnTanh | Variant::RnnRelu) {
        let rnn = &root / "rnn";
        let init = tch::nn::Init::Uniform {
            lo: -1.0 / 50f64.sqrt(),
            up: 1.0 / 50f64.sqrt(),
        };
        for layer in 0..3 {
            raw_params.push(rnn.var(&format!("weight_ih_l{layer}"), &[50, 50], init));
            raw_params.push(rnn.var(&format!("weight_hh_l{layer}"), &[50, 50], init));
            raw_params.push(rnn.var(&format!("bias_ih_l{layer}"), &[50], init));
            raw_params.push(rnn.var(&format!("bias_hh_l{layer}"), &[50], init));
        }
    }
    let head = tch::nn::linear(&root / "head", 50, 2, Default::default());
    let mut optimizer = tch::nn::Adam::default().build(&vs, 1e-3)?;

    let order = pipe_thesis_torch::nn::epoch_order(data.len(), 1, 0);
    let start = Instant::now();
    for chunk in order.chunks(BATCH_SIZE) {
        let examples: Vec<&Example> = chunk.iter().map(|&i| &data[i]).collect();
        let batch = pipe_thesis_torch::nn::make_batch(&examples)?;
        let embedded = embedding.forward(&batch.tokens);
        let batch_size = embedded.size()[1];
        let zeros = Tensor::zeros([3, batch_size, 50], (Kind::Float, tch::Device::Cpu));
        let outputs = if let Some(lstm) = &lstm {
            let state = tch::nn::LSTMState((zeros.shallow_clone(), zeros.shallow_clone()));
            lstm.seq_init(&embedded, &state).0
        } else if let Some(gru) = &gru {
            gru.seq_init(&embedded, &tch::nn::GRUState(zeros)).0
        } else if variant == Variant::RnnTanh {
            embedded
                .rnn_tanh(&zeros, &raw_params, true, 3, 0.0, true, false, false)
                .0
        } else {
            embedded
                .rnn_relu(&zeros, &raw_params, true, 3, 0.0, true, false, false)
                .0
        };
        let last = outputs.get(outputs.size()[0] - 1);
        let loss = head.forward(&last).cross_entropy_for_logits(&batch.labels);
        optimizer.backward_step_clip_norm(&loss, CLIP_NORM);
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The least of three timings: single runs of the libtorch paths vary by up to 2× on a shared
/// machine.
fn best_of_three(
    time: impl Fn() -> Result<f64, Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(time()?);
    }
    Ok(best)
}

/// Seconds per epoch per variant, masked cells vs tch's built-in layers, and their ratios.
pub fn run(count: usize) -> Result<(), Box<dyn std::error::Error>> {
    tch::set_num_threads(1);
    let data = synthetic_reber_like(count, 2021);
    println!("training epoch, {count} sequences, batch {BATCH_SIZE}, E=50 H=50 L=3, 1 thread: seconds per epoch, best of 3");
    println!(
        "{:<9} {:>8} {:>12} {:>12} {:>10} {:>15} {:>12} {:>13} {:>16}",
        "variant",
        "native",
        "masked_loop",
        "masked_fused",
        "builtin",
        "native/builtin",
        "loop/builtin",
        "fused/builtin",
        "default@18750"
    );
    for variant in Variant::ALL {
        let builtin = best_of_three(|| time_builtin(variant, &data))?;
        let native = best_of_three(|| time_native(variant, &data))?;
        let masked_loop = best_of_three(|| time_masked(variant, CellEngine::Loop, &data))?;
        let masked_fused = best_of_three(|| time_masked(variant, CellEngine::Fused, &data))?;
        let default = match CellEngine::fastest_on_cpu(variant) {
            CellEngine::Loop => masked_loop,
            CellEngine::Fused => masked_fused,
        };
        println!(
            "{:<9} {:>8.2} {:>12.2} {:>12.2} {:>10.2} {:>15.2} {:>12.2} {:>13.2} {:>15.1}s",
            variant.name(),
            native,
            masked_loop,
            masked_fused,
            builtin,
            native / builtin,
            masked_loop / builtin,
            masked_fused / builtin,
            default * 18_750.0 / count as f64
        );
    }
    Ok(())
}
