//! Base training of the stacked model on the native kernels (`rnn.train`'s `engine: native`):
//! epochs as [`train_and_evaluate_epoch`] runs them for random networks, a checkpoint per epoch.

use std::path::Path;
use std::time::Instant;

use crate::nn::batch::Example;
use crate::nn::model::RecurrentModel;
use crate::nn::train::{
    load_checkpoint_with, save_checkpoint_with, EpochMetrics, TrainingProgress,
};
use crate::nn::{NnError, NnResult};

use super::epoch::{test_batches, train_and_evaluate_epoch, TrainingSettings};
use super::NativeNetwork;

/// The native state (parameters and Adam moments) inside a checkpoint's epoch directory.
const STATE_FILE: &str = "native.safetensors";

/// Trains `model` (in place: its parameters are the trained ones afterwards) for `epochs`
/// epochs, resuming from the checkpoint in `checkpoint_dir` if there is one, so that a killed
/// run ends byte-identical to an uninterrupted one. `on_epoch` sees each finished epoch.
pub fn train_model(
    model: &RecurrentModel,
    train: &[Example],
    test: &[Example],
    settings: &TrainingSettings,
    epochs: usize,
    checkpoint_dir: &Path,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> NnResult<TrainingProgress> {
    let mut network = NativeNetwork::from_model(model)?;
    let config = model.config().clone();
    let mut progress = load_checkpoint_with(checkpoint_dir, &config, |dir| {
        network.load_state(&dir.join(STATE_FILE))
    })?
    .unwrap_or_default();
    if progress.epochs_done > 0 {
        tracing::info!("resuming after epoch {}", progress.epochs_done);
    }
    let test = test_batches(test, settings.batch_size)?;
    for epoch in progress.epochs_done + 1..=epochs {
        let started = Instant::now();
        let (trained, tested) = train_and_evaluate_epoch(
            std::slice::from_mut(&mut network),
            train,
            &test,
            settings,
            epoch as u64,
        )?
        .pop()
        .ok_or_else(|| NnError::InvalidData("an epoch of one network gave no result".into()))?;
        progress.history.push(EpochMetrics {
            epoch,
            train_loss: trained.loss,
            train_acc: trained.accuracy,
            test_loss: tested.loss,
            test_acc: tested.accuracy,
            seconds: started.elapsed().as_secs_f64(),
        });
        progress.epochs_done = epoch;
        save_checkpoint_with(checkpoint_dir, &config, &progress, |dir| {
            network.save_state(&dir.join(STATE_FILE))
        })?;
        if let Some(last) = progress.history.last() {
            on_epoch(last);
        }
    }
    network.write_parameters_into(model)?;
    Ok(progress)
}
