//! Training and evaluation drivers: one batch, one pass over batches, and one epoch of many
//! networks in parallel.

use rayon::prelude::*;

use crate::nn::batch::Example;
use crate::nn::train::epoch_order;
use crate::nn::{AdamConfig, NnError, NnResult};

use super::batch::NativeBatch;
use super::forward::BatchOutcome;
use super::NativeNetwork;

impl NativeNetwork {
    /// One training step: forward, backward, optional clipping, Adam.
    pub fn train_batch(
        &mut self,
        batch: &NativeBatch,
        clip_norm: Option<f64>,
        adam: &AdamConfig,
    ) -> BatchOutcome {
        self.forward(batch);
        let outcome = self.outcome(batch);
        self.backward(batch);
        if let Some(max_norm) = clip_norm {
            self.clip(max_norm);
        }
        self.adam_step(adam);
        outcome
    }

    /// Loss and accuracy of one batch without training.
    pub fn evaluate_batch(&mut self, batch: &NativeBatch) -> BatchOutcome {
        self.forward(batch);
        self.outcome(batch)
    }
}

/// Per-network totals of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativePass {
    /// Sum of batch-mean losses.
    pub loss: f64,
    pub accuracy: f64,
}

impl NativeNetwork {
    /// One epoch over pre-built batches.
    pub fn train_epoch(
        &mut self,
        batches: &[NativeBatch],
        clip_norm: Option<f64>,
        adam: &AdamConfig,
    ) -> NativePass {
        self.pass(batches, |network, batch| {
            network.train_batch(batch, clip_norm, adam)
        })
    }

    /// Loss and accuracy over pre-built batches, parameters unchanged.
    pub fn evaluate(&mut self, batches: &[NativeBatch]) -> NativePass {
        self.pass(batches, NativeNetwork::evaluate_batch)
    }

    fn pass(
        &mut self,
        batches: &[NativeBatch],
        mut each: impl FnMut(&mut Self, &NativeBatch) -> BatchOutcome,
    ) -> NativePass {
        let mut loss = 0.0;
        let mut correct = 0usize;
        let mut seen = 0usize;
        for batch in batches {
            let outcome = each(self, batch);
            loss += outcome.loss;
            correct += outcome.correct;
            seen += batch.size;
        }
        NativePass {
            loss,
            accuracy: correct as f64 / seen.max(1) as f64,
        }
    }
}

/// How a group of networks trains: the thesis's settings by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingSettings {
    pub batch_size: usize,
    pub clip_norm: Option<f64>,
    pub adam: AdamConfig,
    /// Seed of every epoch's shuffle (all networks see the same batches).
    pub shuffle_seed: u64,
}

/// Trains every network one epoch (all on the batches of
/// [`epoch_order`]`(len, shuffle_seed, epoch)`) and evaluates it on `test` (built once by the
/// caller, [`test_batches`]), networks in parallel on the current rayon pool. Returns (train,
/// test) per network. Each network's numbers depend only on itself and the data, not on the
/// group or the thread count.
pub fn train_and_evaluate_epoch(
    networks: &mut [NativeNetwork],
    train: &[Example],
    test: &[NativeBatch],
    settings: &TrainingSettings,
    epoch: u64,
) -> NnResult<Vec<(NativePass, NativePass)>> {
    if train.is_empty() || test.is_empty() || settings.batch_size == 0 {
        return Err(NnError::InvalidData(
            "training needs train and test examples and a batch size of at least 1".into(),
        ));
    }
    let order = epoch_order(train.len(), settings.shuffle_seed, epoch);
    let train_batches = NativeBatch::all(train, &order, settings.batch_size)?;
    Ok(networks
        .par_iter_mut()
        .map(|network| {
            let trained = network.train_epoch(&train_batches, settings.clip_norm, &settings.adam);
            let tested = network.evaluate(test);
            (trained, tested)
        })
        .collect())
}

/// The batches of an evaluation pass over `data` in its own order, built once for every epoch.
pub fn test_batches(data: &[Example], batch_size: usize) -> NnResult<Vec<NativeBatch>> {
    let order: Vec<usize> = (0..data.len()).collect();
    NativeBatch::all(data, &order, batch_size)
}
