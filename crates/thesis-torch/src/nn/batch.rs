//! Labelled sequences and the padded batches a model reads: the data types every other part of
//! `nn` shares, so that models, optimisers and training import them and not one another.

use tch::Tensor;

use super::{NnError, NnResult};

/// One labelled sequence of token codes (ASCII codes for Reber strings; 0 is padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub codes: Vec<i64>,
    pub label: i64,
}

impl Example {
    /// Encodes each character as its code point (ASCII for the Reber alphabet).
    pub fn from_text(text: &str, label: i64) -> Self {
        Example {
            codes: text.chars().map(|c| c as i64).collect(),
            label,
        }
    }
}

/// A batch ready for the model: time-major token ids `[T, B]` right-padded with 0, true
/// lengths `[B]` and labels `[B]`.
#[derive(Debug)]
pub struct Batch {
    pub tokens: Tensor,
    pub lengths: Tensor,
    pub labels: Tensor,
}

impl Batch {
    /// The batch on `device` (itself on the CPU).
    pub fn to_device(self, device: tch::Device) -> NnResult<Batch> {
        if device == tch::Device::Cpu {
            return Ok(self);
        }
        Ok(Batch {
            tokens: self.tokens.f_to_device(device)?,
            lengths: self.lengths.f_to_device(device)?,
            labels: self.labels.f_to_device(device)?,
        })
    }
}

/// Pads a set of examples to the longest one (T = max length) and stacks them.
pub fn make_batch(examples: &[&Example]) -> NnResult<Batch> {
    let batch = examples.len();
    let steps = examples.iter().map(|e| e.codes.len()).max().unwrap_or(0);
    if batch == 0 || steps == 0 {
        return Err(NnError::InvalidData(
            "a batch needs at least one non-empty sequence".into(),
        ));
    }
    if let Some(empty) = examples.iter().position(|e| e.codes.is_empty()) {
        return Err(NnError::InvalidData(format!(
            "sequence {empty} of the batch is empty"
        )));
    }
    let mut tokens = vec![0i64; steps * batch];
    for (column, example) in examples.iter().enumerate() {
        for (step, &code) in example.codes.iter().enumerate() {
            tokens[step * batch + column] = code;
        }
    }
    let lengths: Vec<i64> = examples.iter().map(|e| e.codes.len() as i64).collect();
    let labels: Vec<i64> = examples.iter().map(|e| e.label).collect();
    Ok(Batch {
        tokens: Tensor::f_from_slice(&tokens)?.f_reshape([steps as i64, batch as i64])?,
        lengths: Tensor::f_from_slice(&lengths)?,
        labels: Tensor::f_from_slice(&labels)?,
    })
}
