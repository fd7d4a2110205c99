//! `pipe eval`: a weight file with PyTorch's tensor names, evaluated on a `string,valid` CSV.

use std::path::Path;

use crate::data::Dataset;

use super::{DeviceSpec, Example, Readout, RecurrentModel, Variant};

/// The result of `pipe eval`.
pub struct EvalReport {
    pub accuracy: f64,
    pub loss: f64,
    pub n: usize,
}

/// Why `pipe eval` could not evaluate. Each message is complete (it names the file and, for a
/// tensor, its name and expected shape); print it with `{}`.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] super::NnError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{}: no rows to evaluate", .0.display())]
    NoRows(std::path::PathBuf),
    #[error(transparent)]
    Device(#[from] super::DeviceError),
}

/// Evaluates a weight file on every row of a `string,valid` CSV, on `device` (`cuda:N` is this
/// process's CUDA device N), in file order or, with `shuffle: Some(seed)`, in a seeded random
/// order (as a shuffled PyTorch test loader would: with the last-padded readout each batch's
/// padded length, and so the result, depends on which strings share it). Weights holding a NaN or
/// an infinity are an error naming the tensor.
pub fn evaluate_file(
    variant: Variant,
    readout: Readout,
    weights: &Path,
    data: &Path,
    batch_size: usize,
    device: DeviceSpec,
    shuffle: Option<u64>,
) -> Result<EvalReport, EvalError> {
    let _torch = super::TorchThreads::acquire(1);
    let ordinals: Vec<usize> = if device.is_cpu() {
        Vec::new()
    } else {
        (0..tch::Cuda::device_count().max(0) as usize).collect()
    };
    let device = super::device::resolve(device, &ordinals)?;
    let config = super::infer_config(variant, readout, weights)?;
    let model = RecurrentModel::load(config, weights)?.into_device(device)?;
    let dataset = Dataset::import_with_split(data, crate::data::TestSize::Count(0), 0)?;
    let mut examples: Vec<Example> = dataset
        .rows
        .iter()
        .map(|row| Example::from_text(&row.string, i64::from(row.valid)))
        .collect();
    if examples.is_empty() {
        return Err(EvalError::NoRows(data.to_path_buf()));
    }
    if let Some(seed) = shuffle {
        let order = super::epoch_order(examples.len(), seed, 0);
        let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
        examples = order.iter().filter_map(|&i| slots[i].take()).collect();
    }
    let (loss, accuracy) = super::evaluate(&model, &examples, batch_size.max(1))?;
    Ok(EvalReport {
        accuracy,
        loss,
        n: examples.len(),
    })
}
