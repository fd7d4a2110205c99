//! The native kernels alone, per instruction-set path this CPU runs: one training epoch of the
//! thesis's stacked model (E = H = 50, 3 layers, batch 32, as `rnn.train`) and of 100 random
//! networks (batch 128, as `rnn.train_random`), per variant (`PIPE_BENCH_VARIANTS` narrows them),
//! on one thread; and the pruned thesis model multiplied as dense matrices against term by term
//! with the masked weights skipped. `PIPE_BENCH_PARTS` (comma-separated `thesis`, `random`,
//! `pruned`) narrows it, e.g. to profile one kind of network alone.

use std::time::Instant;

use anyhow::{anyhow, Result};
use pipe_thesis_torch::nn::native::{Isa, NativeBatch, NativeNetwork};
use pipe_thesis_torch::nn::prune::{magnitude_masks, pruned_copy, PruneTarget, ThresholdScope};
use pipe_thesis_torch::nn::{
    epoch_order, AdamConfig, CellEngine, ModelConfig, Readout, RecurrentModel,
};

use crate::structure::{bench_variants, networks, thesis_sample};
use crate::train::synthetic_reber_like;

/// Seconds for one epoch of `network` over `batches` on `isa`: the best of three epochs (the
/// work per epoch is the same; the best is the least disturbed by the rest of the machine).
fn epoch_seconds(mut network: NativeNetwork, isa: Isa, batches: &[NativeBatch]) -> Result<f64> {
    network.set_isa(isa)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        network.train_epoch(batches, Some(5.0), &AdamConfig::default());
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

pub fn run(sequences: usize) -> Result<()> {
    let data = synthetic_reber_like(sequences, 2021);
    let order = epoch_order(data.len(), 1, 0);
    let dense_batches = NativeBatch::all(&data, &order, 32)?;
    let random_batches = NativeBatch::all(&data, &order, 128)?;
    let parts = bench_parts()?;
    let wants = |part: &str| parts.iter().any(|p| p == part);
    let structures = thesis_sample()?;
    let isas: Vec<Isa> = Isa::supported()
        .into_iter()
        .filter(|&isa| isa != Isa::Portable)
        .collect();
    println!(
        "native kernels, {sequences} sequences, 1 thread, seconds per epoch (best of 3): the thesis model \
         (batch 32) and {} random networks (batch 128), per instruction-set path \
         (the portable path, a C library call per fused multiply-add, is left out)",
        structures.len()
    );
    for variant in bench_variants()? {
        let model = RecurrentModel::new(
            ModelConfig {
                engine: CellEngine::Loop,
                ..ModelConfig::thesis(variant)
            },
            1,
        )?;
        let networks = if wants("random") {
            networks(&structures, variant)?
        } else {
            Vec::new()
        };
        for &isa in isas.iter().filter(|_| wants("thesis") || wants("random")) {
            let mut cells = Vec::new();
            if wants("thesis") {
                let dense = epoch_seconds(NativeNetwork::from_model(&model)?, isa, &dense_batches)?;
                cells.push(format!("thesis model {dense:>6.3} s"));
            }
            if wants("random") {
                let mut random = 0.0;
                for network in &networks {
                    random += epoch_seconds(
                        NativeNetwork::from_reference(network, Readout::LastPadded)?,
                        isa,
                        &random_batches,
                    )?;
                }
                cells.push(format!("random networks {random:>6.3} s"));
            }
            println!(
                "  {:<9} {:<9} {}",
                variant.name(),
                isa.name(),
                cells.join("   ")
            );
        }
        if !wants("pruned") {
            continue;
        }
        // The pruned thesis model: dense matrices with zeros vs masked weights skipped.
        let best = Isa::best();
        let mut cells = Vec::new();
        for level in PRUNED_LEVELS {
            let masks = magnitude_masks(&model, PruneTarget::Both, ThresholdScope::Global, level)?;
            let pruned = pruned_copy(&model, &masks)?;
            let dense = epoch_seconds(NativeNetwork::from_model(&pruned)?, best, &dense_batches)?;
            let mut term_by_term = NativeNetwork::from_model(&pruned)?;
            term_by_term.set_dense(false);
            let skipped = epoch_seconds(term_by_term, best, &dense_batches)?;
            cells.push(format!("{level:.0} % {dense:.3} / {skipped:.3} s"));
        }
        println!(
            "  {:<9} {:<9} pruned (both) thesis model, dense / masked weights skipped: {}",
            variant.name(),
            best.name(),
            cells.join(", ")
        );
    }
    Ok(())
}

/// The parts to measure: `PIPE_BENCH_PARTS` (comma-separated), or all three; a misspelt part is
/// refused rather than silently measuring nothing.
fn bench_parts() -> Result<Vec<String>> {
    const PARTS: [&str; 3] = ["thesis", "random", "pruned"];
    let Ok(listed) = std::env::var("PIPE_BENCH_PARTS") else {
        return Ok(PARTS.map(String::from).to_vec());
    };
    listed
        .split(',')
        .map(|part| {
            if PARTS.contains(&part) {
                Ok(part.to_string())
            } else {
                Err(anyhow!(
                    "PIPE_BENCH_PARTS: unknown part `{part}` (expected a comma-separated list of {})",
                    PARTS.join(", ")
                ))
            }
        })
        .collect()
}

/// Pruning levels at which the pruned model's two ways of multiplying are compared.
const PRUNED_LEVELS: [f64; 4] = [50.0, 80.0, 90.0, 100.0];
