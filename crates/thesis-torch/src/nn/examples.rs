//! A `dataset.csv` as the train and test examples a recurrent model trains and is tested on.

use std::path::{Path, PathBuf};

use crate::data::{DataError, Dataset, Split};

use super::Example;

/// Why a dataset file gives no usable examples.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{} needs both train and test rows (found {train} and {test})", .path.display())]
    MissingSplit {
        path: PathBuf,
        train: usize,
        test: usize,
    },
}

/// The train and test examples of a `dataset.csv`.
pub fn load_examples(path: &Path) -> Result<(Vec<Example>, Vec<Example>), ExamplesError> {
    let dataset = Dataset::read_csv(path)?;
    let pick = |split: Split| -> Vec<Example> {
        dataset
            .split_rows(split)
            .map(|row| Example::from_text(&row.string, i64::from(row.valid)))
            .collect()
    };
    let (train, test) = (pick(Split::Train), pick(Split::Test));
    if train.is_empty() || test.is_empty() {
        return Err(ExamplesError::MissingSplit {
            path: path.to_path_buf(),
            train: train.len(),
            test: test.len(),
        });
    }
    Ok((train, test))
}
