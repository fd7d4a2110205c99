//! Randomly structured networks (thesis experiment 3): libtorch one at a time versus the native
//! kernels versus padded libtorch groups, and the projected time of the full sweep.

use std::time::Instant;

use anyhow::Result;
use pipe::data::{generate, GeneratorParams, Split, TestSize};
use pipe::graph::{generate_graph_set_seeded, GenerationConfig};
use pipe_thesis_torch::nn::native::{test_batches, NativeBatch, NativeNetwork};
use pipe_thesis_torch::nn::random::{
    evaluate_group, network_seed, train_group_epoch, NetworkGroup, NetworkStructure, RandomNetwork,
};
use pipe_thesis_torch::nn::{
    clip_grad_norm, cross_entropy, epoch_order, make_batch, Adam, AdamConfig, Example, Readout,
    Variant,
};

const TRAIN: usize = 2_000;
const TEST: usize = 500;
const FULL_TRAIN: f64 = 18_750.0;
const FULL_TEST: f64 = 6_250.0;
const FULL_NETWORK_EPOCHS: f64 = 800.0 * 15.0;
// (the per-variant lines price all 800 networks at that variant's cost; the summary sums
// 200 per variant)

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds per network for one epoch on the bench's train set (scaled from `batches`
/// batches) and for one pass over its test set.
struct Timing {
    train: f64,
    test: f64,
}

impl Timing {
    /// From totals over `networks` networks that each trained `batches` batches.
    fn per_network(train_seconds: f64, test_seconds: f64, networks: usize, batches: usize) -> Self {
        let epoch_batches = TRAIN.div_ceil(128) as f64;
        let n = networks as f64;
        Timing {
            train: train_seconds / n * epoch_batches / batches as f64,
            test: test_seconds / n,
        }
    }

    /// Projected seconds per network-epoch at the thesis's scale.
    fn full_epoch(&self) -> f64 {
        self.train * FULL_TRAIN / TRAIN as f64 + self.test * FULL_TEST / TEST as f64
    }
}

/// Every `count`-th network of the size-ordered sample, so a subset has the sample's sizes.
fn stratified(sample: &[NetworkStructure], count: usize) -> Vec<NetworkStructure> {
    (0..count)
        .map(|i| sample[i * sample.len() / count].clone())
        .collect()
}

/// The variants to measure: `PIPE_BENCH_VARIANTS` (comma-separated), or all four.
pub fn bench_variants() -> Result<Vec<Variant>> {
    std::env::var("PIPE_BENCH_VARIANTS")
        .unwrap_or_else(|_| "rnn_tanh,rnn_relu,lstm,gru".into())
        .split(',')
        .map(|v| v.parse().map_err(anyhow::Error::msg))
        .collect()
}

/// 100 of the thesis generator's 200 graphs (every other one: 50 BA, 50 WS) as network
/// structures.
pub fn thesis_sample() -> Result<Vec<NetworkStructure>> {
    let graphs = generate_graph_set_seeded(&GenerationConfig::thesis(), 0)?;
    Ok(graphs
        .iter()
        .step_by(2)
        .map(NetworkStructure::from_graph)
        .collect::<Result<_, _>>()?)
}

pub fn networks(structures: &[NetworkStructure], variant: Variant) -> Result<Vec<RandomNetwork>> {
    structures
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(RandomNetwork::new(
                s.clone(),
                variant,
                Readout::LastPadded,
                network_seed(0, i),
            )?)
        })
        .collect()
}

/// The literal architecture, one network after the other (what the thesis ran).
fn one_at_a_time(
    structures: &[NetworkStructure],
    variant: Variant,
    train: &[Example],
    test: &[Example],
    batches: usize,
) -> Result<Timing> {
    let mut train_seconds = 0.0;
    let mut test_seconds = 0.0;
    for network in networks(structures, variant)? {
        let mut adam = Adam::new(network.named_parameters(), AdamConfig::default())?;
        let order = epoch_order(train.len(), 1, 1);
        let started = Instant::now();
        for chunk in order.chunks(128).take(batches) {
            let examples: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
            let batch = make_batch(&examples)?;
            adam.zero_grad();
            let loss = cross_entropy(&network.forward(&batch)?, &batch.labels)?;
            loss.backward();
            clip_grad_norm(&adam.gradients(), 5.0)?;
            adam.step()?;
        }
        train_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        tch::no_grad(|| -> Result<()> {
            for chunk in test.chunks(128) {
                let examples: Vec<&Example> = chunk.iter().collect();
                let _ = network.forward(&make_batch(&examples)?)?;
            }
            Ok(())
        })?;
        test_seconds += started.elapsed().as_secs_f64();
    }
    Ok(Timing::per_network(
        train_seconds,
        test_seconds,
        structures.len(),
        batches,
    ))
}

/// The native kernels (`nn::native`), one network after the other on one thread.
fn native(
    structures: &[NetworkStructure],
    variant: Variant,
    train: &[Example],
    test: &[Example],
    batches: usize,
) -> Result<Timing> {
    let config = AdamConfig::default();
    let order = epoch_order(train.len(), 1, 1);
    let train_batches: Vec<NativeBatch> = NativeBatch::all(train, &order, 128)?
        .into_iter()
        .take(batches)
        .collect();
    let test_batches = test_batches(test, 128)?;
    let mut train_seconds = 0.0;
    let mut test_seconds = 0.0;
    for network in networks(structures, variant)? {
        let mut network = NativeNetwork::from_reference(&network, Readout::LastPadded)?;
        let started = Instant::now();
        network.train_epoch(&train_batches, Some(5.0), &config);
        train_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        network.evaluate(&test_batches);
        test_seconds += started.elapsed().as_secs_f64();
    }
    Ok(Timing::per_network(
        train_seconds,
        test_seconds,
        structures.len(),
        batches,
    ))
}

/// Batched groups of `group_size` (members of similar size, as `rnn.train_random` plans).
fn grouped(
    structures: &[NetworkStructure],
    group_size: usize,
    variant: Variant,
    train: &[Example],
    test: &[Example],
    batches: usize,
) -> Result<(Timing, f64)> {
    let plan = pipe_thesis_torch::nn::random::plan_groups(structures, group_size);
    let all = networks(structures, variant)?;
    let mut train_seconds = 0.0;
    let mut test_seconds = 0.0;
    let mut padded_units = 0usize;
    let mut real_units = 0usize;
    let mut slots: Vec<Option<RandomNetwork>> = all.into_iter().map(Some).collect();
    let subset: Vec<Example> = {
        let order = epoch_order(train.len(), 1, 1);
        order
            .iter()
            .take(batches * 128)
            .map(|&i| train[i].clone())
            .collect()
    };
    for members in plan {
        let group_networks: Vec<RandomNetwork> =
            members.iter().filter_map(|&m| slots[m].take()).collect();
        for network in &group_networks {
            let s = network.structure();
            real_units += s
                .connections
                .iter()
                .map(|c| s.layer_sizes[c.target])
                .sum::<usize>();
        }
        let group = NetworkGroup::from_networks(&group_networks)?;
        padded_units += group.len()
            * group
                .widths()
                .iter()
                .zip(group.slot_counts())
                .map(|(w, s)| w * s)
                .sum::<usize>();
        let mut adam = Adam::new(group.named_parameters(), AdamConfig::default())?;
        let started = Instant::now();
        // `subset` is already the epoch's first batches, so train it in file order.
        train_group_epoch(&group, &mut adam, &subset, 128, Some(5.0), 1, 0)?;
        train_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        evaluate_group(&group, test, 128)?;
        test_seconds += started.elapsed().as_secs_f64();
    }
    Ok((
        Timing::per_network(train_seconds, test_seconds, structures.len(), batches),
        real_units as f64 / padded_units as f64,
    ))
}

pub fn run() -> Result<()> {
    tch::set_num_threads(env_or("PIPE_BENCH_THREADS", 1));
    let batches: usize = env_or("PIPE_BENCH_BATCHES", 2);
    let variants = bench_variants()?;
    let sizes: Vec<usize> = std::env::var("PIPE_BENCH_GROUPS")
        .unwrap_or_else(|_| "4,16".into())
        .split(',')
        .map(|v| v.parse::<usize>().map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let alone_count: usize = env_or("PIPE_BENCH_ALONE", 20);
    let dataset = generate(&GeneratorParams {
        total: TRAIN + TEST,
        test: TestSize::Count(TEST),
        ..GeneratorParams::default()
    })?;
    let pick = |split| -> Vec<Example> {
        dataset
            .split_rows(split)
            .map(|r| Example::from_text(&r.string, i64::from(r.valid)))
            .collect()
    };
    let (train, test) = (pick(Split::Train), pick(Split::Test));
    // By size, so that subsets can be stratified.
    let mut sample = thesis_sample()?;
    sample.sort_by_key(|s| (s.layer_count(), s.layer_sizes.iter().sum::<usize>()));
    println!(
        "structure: {} train / {} test Reber sequences, batch 128, {} of {} batches timed, \
         1 libtorch thread; networks from graph.random's thesis settings (seed 0), \
         subsets stratified by size; seconds per network-epoch on this subset \
         (train epoch + one test pass)",
        train.len(),
        test.len(),
        batches,
        TRAIN.div_ceil(128)
    );
    // Per group size, the projected full sweep summed over the measured variants (each 200
    // networks × 15 epochs).
    let mut sweep_seconds = vec![0.0f64; sizes.len()];
    let mut literal_sweep_seconds = 0.0;
    let mut native_sweep_seconds = 0.0;
    let variant_count = variants.len();
    for variant in variants {
        let alone = one_at_a_time(
            &stratified(&sample, alone_count),
            variant,
            &train,
            &test,
            batches,
        )?;
        let alone_epoch = alone.train + alone.test;
        literal_sweep_seconds += alone.full_epoch() * 200.0 * 15.0;
        println!(
            "  {variant}: one at a time (literal, {alone_count} networks): {alone_epoch:.3} s/network-epoch \
             (train {:.3}, test {:.3}); 800 networks at this variant's cost: {:.1} h",
            alone.train,
            alone.test,
            alone.full_epoch() * FULL_NETWORK_EPOCHS / 3600.0
        );
        let native_timing = native(&sample, variant, &train, &test, batches)?;
        let native_epoch = native_timing.train + native_timing.test;
        native_sweep_seconds += native_timing.full_epoch() * 200.0 * 15.0;
        println!(
            "  {variant}: native kernels ({} networks, 1 thread): {native_epoch:.3} s/network-epoch \
             (train {:.3}, test {:.3}), {:.1}× one at a time; 800 networks at this variant's cost: {:.1} h",
            sample.len(),
            native_timing.train,
            native_timing.test,
            alone_epoch / native_epoch,
            native_timing.full_epoch() * FULL_NETWORK_EPOCHS / 3600.0
        );
        for (position, &size) in sizes.iter().enumerate() {
            let count = if size == 1 { alone_count } else { sample.len() };
            let (timing, fill) = grouped(
                &stratified(&sample, count),
                size,
                variant,
                &train,
                &test,
                batches,
            )?;
            let epoch = timing.train + timing.test;
            sweep_seconds[position] += timing.full_epoch() * 200.0 * 15.0;
            println!(
                "  {variant}: groups of {size:>3} ({} networks, {:.0} % of padded units real): \
                 {epoch:.3} s/network-epoch (train {:.3}, test {:.3}), {:.1}× one at a time; \
                 800 networks at this variant's cost: {:.1} h",
                count,
                100.0 * fill,
                timing.train,
                timing.test,
                alone_epoch / epoch,
                timing.full_epoch() * FULL_NETWORK_EPOCHS / 3600.0
            );
        }
    }
    if variant_count == 4 {
        println!(
            "  all four variants, 200 networks each × 15 epochs: one at a time {:.1} h",
            literal_sweep_seconds / 3600.0
        );
        println!(
            "  all four variants, native kernels: {:.2} CPU-hours, {:.0} minutes on 2 cores \
             ({:.1}× one at a time)",
            native_sweep_seconds / 3600.0,
            native_sweep_seconds / 120.0,
            literal_sweep_seconds / native_sweep_seconds
        );
        for (size, seconds) in sizes.iter().zip(&sweep_seconds) {
            println!(
                "  all four variants, groups of {size:>3}: {:.1} h ({:.1}× one at a time)",
                seconds / 3600.0,
                literal_sweep_seconds / seconds
            );
        }
    }
    Ok(())
}
