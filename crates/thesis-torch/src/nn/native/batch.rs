//! Batches in the kernels' layout: tokens time-major, padded to the longest sequence.

use crate::nn::batch::Example;
use crate::nn::{NnError, NnResult};

use super::{CLASSES, VOCAB};

/// A batch in the layout the kernels use: tokens time-major `[T × B]`.
pub struct NativeBatch {
    pub(super) steps: usize,
    pub(super) size: usize,
    pub(super) tokens: Vec<usize>,
    pub(super) lengths: Vec<usize>,
    pub(super) labels: Vec<usize>,
}

impl NativeBatch {
    /// Pads with token 0 to the longest sequence, as `make_batch` does.
    pub fn new(examples: &[&Example]) -> NnResult<Self> {
        let size = examples.len();
        let steps = examples.iter().map(|e| e.codes.len()).max().unwrap_or(0);
        if size == 0 || steps == 0 || examples.iter().any(|e| e.codes.is_empty()) {
            return Err(NnError::InvalidData(
                "a batch needs at least one sequence and no empty ones".into(),
            ));
        }
        let mut tokens = vec![0usize; steps * size];
        for (column, example) in examples.iter().enumerate() {
            for (step, &code) in example.codes.iter().enumerate() {
                let code = usize::try_from(code)
                    .ok()
                    .filter(|&c| c < VOCAB)
                    .ok_or_else(|| {
                        NnError::InvalidData(format!(
                            "token code {code} is outside the embedding's 0..{VOCAB}"
                        ))
                    })?;
                tokens[step * size + column] = code;
            }
        }
        let labels = examples
            .iter()
            .map(|e| {
                usize::try_from(e.label)
                    .ok()
                    .filter(|&l| l < CLASSES)
                    .ok_or_else(|| NnError::InvalidData(format!("label {} is not 0 or 1", e.label)))
            })
            .collect::<NnResult<Vec<_>>>()?;
        Ok(NativeBatch {
            steps,
            size,
            tokens,
            lengths: examples.iter().map(|e| e.codes.len()).collect(),
            labels,
        })
    }

    /// The batches of one pass over `data` in the given order.
    pub fn all(data: &[Example], order: &[usize], batch_size: usize) -> NnResult<Vec<Self>> {
        order
            .chunks(batch_size.max(1))
            .map(|chunk| {
                let examples: Vec<&Example> = chunk.iter().map(|&i| &data[i]).collect();
                NativeBatch::new(&examples)
            })
            .collect()
    }
}
