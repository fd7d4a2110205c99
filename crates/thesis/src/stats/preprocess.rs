//! Preparing the property table for regression: MinMax scaling (as scikit-learn's
//! `MinMaxScaler`), a seeded shuffled train/test split laid out as scikit-learn's
//! `train_test_split`, a split from explicit test rows (to replay the thesis's split), and seeded
//! k-fold cross-validation of R². Whether the scaler sees all rows or only the training rows is the
//! caller's choice (`ScalerFit`): the thesis fitted it on all rows, which leaks the test rows'
//! range into training.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::metrics::r2_score;
use super::sampling::{permutation, seeded_rng};
use super::{select_rows, Result, StatsError};

/// Per-column MinMax scaling to [0, 1], fitted on some rows and applicable to any rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MinMaxScaler {
    /// Multiplier per column: 1 / (max - min), or 1 for a constant column (as scikit-learn).
    scale: Array1<f64>,
    /// Offset per column: -min * scale, so that `x * scale + offset` is scikit-learn's formula.
    offset: Array1<f64>,
}

impl MinMaxScaler {
    /// Learns each column's minimum and range from `x`.
    pub fn fit(x: ArrayView2<'_, f64>) -> Result<Self> {
        if x.nrows() == 0 {
            return Err(StatsError::TooFewRows {
                what: "MinMax scaling",
                needed: 1,
                got: 0,
            });
        }
        if !x.iter().all(|v| v.is_finite()) {
            return Err(StatsError::NonFinite { what: "features" });
        }
        let column_extremes = x.axis_iter(Axis(1)).map(|column| {
            column
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        });
        let mut scale = Array1::zeros(x.ncols());
        let mut offset = Array1::zeros(x.ncols());
        for (column, (lo, hi)) in column_extremes.enumerate() {
            let range = hi - lo;
            // A constant column keeps scale 1, as scikit-learn's `_handle_zeros_in_scale`: it maps to 0.
            let column_scale = if range == 0.0 { 1.0 } else { 1.0 / range };
            scale[column] = column_scale;
            offset[column] = -lo * column_scale;
        }
        Ok(Self { scale, offset })
    }

    /// Scales `x` with the learned minima and ranges (values outside the fitted range leave [0, 1]).
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.scale.len() {
            return Err(StatsError::ShapeMismatch {
                what: "number of feature columns",
                expected: self.scale.len(),
                got: x.ncols(),
            });
        }
        let mut scaled = x.to_owned();
        for mut row in scaled.axis_iter_mut(Axis(0)) {
            for ((value, scale), offset) in row.iter_mut().zip(&self.scale).zip(&self.offset) {
                *value = *value * scale + offset;
            }
        }
        Ok(scaled)
    }

    /// Fits on `x` and scales it.
    pub fn fit_transform(x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        Self::fit(x)?.transform(x)
    }
}

/// Which rows the MinMax scaler learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalerFit {
    /// All rows before splitting: what the thesis code did.
    AllRows,
    /// Training rows only: the leak-free alternative.
    TrainRows,
}

/// Row numbers (0-based, in table order) of the two parts of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainTestSplit {
    pub train_rows: Vec<usize>,
    pub test_rows: Vec<usize>,
}

/// A seeded random split: ceil(test_fraction * n) test rows, the rest for training, laid out as
/// scikit-learn's `ShuffleSplit` (test rows first in one random permutation). The permutation
/// comes from ChaCha8, so it does not reproduce scikit-learn's row choice, only its sizes.
pub fn shuffled_split(n_rows: usize, test_fraction: f64, seed: u64) -> Result<TrainTestSplit> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(StatsError::InvalidParameter {
            name: "test_fraction",
            reason: format!("must lie strictly between 0 and 1, got {test_fraction}"),
        });
    }
    let n_test = (test_fraction * n_rows as f64).ceil() as usize;
    if n_rows < 2 || n_test == 0 || n_test >= n_rows {
        return Err(StatsError::TooFewRows {
            what: "a train/test split",
            needed: 2,
            got: n_rows,
        });
    }
    let order = permutation(&mut seeded_rng(seed), n_rows);
    Ok(TrainTestSplit {
        test_rows: order[..n_test].to_vec(),
        train_rows: order[n_test..].to_vec(),
    })
}

/// A split with the given test rows; the training rows are the others, in table order.
pub fn split_from_test_rows(n_rows: usize, test_rows: &[usize]) -> Result<TrainTestSplit> {
    let mut is_test = vec![false; n_rows];
    for &row in test_rows {
        if row >= n_rows {
            return Err(StatsError::RowOutOfRange { row, n_rows });
        }
        if is_test[row] {
            return Err(StatsError::DuplicateRow { row });
        }
        is_test[row] = true;
    }
    let train_rows: Vec<usize> = (0..n_rows).filter(|&row| !is_test[row]).collect();
    if test_rows.is_empty() || train_rows.is_empty() {
        return Err(StatsError::TooFewRows {
            what: "a train/test split with both parts non-empty",
            needed: 2,
            got: n_rows,
        });
    }
    Ok(TrainTestSplit {
        train_rows,
        test_rows: test_rows.to_vec(),
    })
}

/// Scaled features and targets of both parts of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedSplit {
    pub x_train: Array2<f64>,
    pub y_train: Array1<f64>,
    pub x_test: Array2<f64>,
    pub y_test: Array1<f64>,
}

/// Cuts `x`/`y` along `split` and MinMax-scales the features, fitting the scaler as `scaler_fit` says.
pub fn prepare_split(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    split: &TrainTestSplit,
    scaler_fit: ScalerFit,
) -> Result<PreparedSplit> {
    if x.nrows() != y.len() {
        return Err(StatsError::ShapeMismatch {
            what: "number of targets vs feature rows",
            expected: x.nrows(),
            got: y.len(),
        });
    }
    for &row in split.train_rows.iter().chain(&split.test_rows) {
        if row >= x.nrows() {
            return Err(StatsError::RowOutOfRange {
                row,
                n_rows: x.nrows(),
            });
        }
    }
    let x_train_raw = select_rows(x, &split.train_rows);
    let x_test_raw = select_rows(x, &split.test_rows);
    let scaler = match scaler_fit {
        ScalerFit::AllRows => MinMaxScaler::fit(x)?,
        ScalerFit::TrainRows => MinMaxScaler::fit(x_train_raw.view())?,
    };
    Ok(PreparedSplit {
        x_train: scaler.transform(x_train_raw.view())?,
        y_train: y.select(Axis(0), &split.train_rows),
        x_test: scaler.transform(x_test_raw.view())?,
        y_test: y.select(Axis(0), &split.test_rows),
    })
}

/// The test rows of each fold of a seeded shuffled k-fold split. Fold sizes follow scikit-learn's
/// `KFold`: the first `n_rows % n_folds` folds hold one row more.
pub fn kfold_test_rows(n_rows: usize, n_folds: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if n_folds < 2 {
        return Err(StatsError::InvalidParameter {
            name: "n_folds",
            reason: format!("needs at least 2 folds, got {n_folds}"),
        });
    }
    if n_rows < n_folds {
        return Err(StatsError::TooFewRows {
            what: "k-fold cross-validation (one row per fold at least)",
            needed: n_folds,
            got: n_rows,
        });
    }
    let order = permutation(&mut seeded_rng(seed), n_rows);
    let base_size = n_rows / n_folds;
    let larger_folds = n_rows % n_folds;
    let mut folds = Vec::with_capacity(n_folds);
    let mut start = 0;
    for fold in 0..n_folds {
        let size = base_size + usize::from(fold < larger_folds);
        folds.push(order[start..start + size].to_vec());
        start += size;
    }
    Ok(folds)
}

/// Per-fold R² of a cross-validation and their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    pub fold_r2: Vec<f64>,
    pub mean: f64,
    /// Population standard deviation (divide by k), as numpy's default `std`.
    pub std: f64,
}

impl CrossValidation {
    /// Summarises per-fold scores.
    pub fn from_scores(fold_r2: Vec<f64>) -> Self {
        let k = fold_r2.len().max(1) as f64;
        let mean = fold_r2.iter().sum::<f64>() / k;
        let variance = fold_r2.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / k;
        Self {
            fold_r2,
            mean,
            std: variance.sqrt(),
        }
    }
}

/// Seeded k-fold cross-validated R²: for each fold, `fit_predict(x_train, y_train, x_test)` is
/// called on the scaled other folds and scored on the fold. Use `Regressor::fit_predict` or any
/// closure.
pub fn cross_validate_r2<F>(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    n_folds: usize,
    seed: u64,
    scaler_fit: ScalerFit,
    mut fit_predict: F,
) -> Result<CrossValidation>
where
    F: FnMut(ArrayView2<'_, f64>, ArrayView1<'_, f64>, ArrayView2<'_, f64>) -> Result<Array1<f64>>,
{
    let folds = kfold_test_rows(x.nrows(), n_folds, seed)?;
    let mut scores = Vec::with_capacity(folds.len());
    for test_rows in &folds {
        let split = split_from_test_rows(x.nrows(), test_rows)?;
        let prepared = prepare_split(x, y, &split, scaler_fit)?;
        let predicted = fit_predict(
            prepared.x_train.view(),
            prepared.y_train.view(),
            prepared.x_test.view(),
        )?;
        scores.push(r2_score(prepared.y_test.view(), predicted.view())?);
    }
    Ok(CrossValidation::from_scores(scores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn minmax_maps_fitted_rows_to_unit_interval() {
        let x = array![[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [2.0, 5.0, 0.0]];
        let scaled = MinMaxScaler::fit_transform(x.view()).unwrap();
        assert_eq!(
            scaled,
            array![[0.0, 0.0, 0.5], [1.0, 0.0, 1.0], [0.5, 0.0, 0.0]]
        );
        let scaler = MinMaxScaler::fit(x.view()).unwrap();
        let outside = scaler.transform(array![[5.0, 6.0, 8.0]].view()).unwrap();
        assert_eq!(outside, array![[2.0, 1.0, 2.0]]);
        assert!(scaler.transform(array![[1.0, 2.0]].view()).is_err());
    }

    #[test]
    fn shuffled_split_has_sklearn_sizes_and_is_seeded() {
        let split = shuffled_split(200, 0.1, 7).unwrap();
        assert_eq!(split.test_rows.len(), 20);
        assert_eq!(split.train_rows.len(), 180);
        assert_eq!(split, shuffled_split(200, 0.1, 7).unwrap());
        assert_ne!(split, shuffled_split(200, 0.1, 8).unwrap());
        // ceil, as scikit-learn: 10% of 15 rows gives 2 test rows.
        assert_eq!(shuffled_split(15, 0.1, 0).unwrap().test_rows.len(), 2);
        let mut all: Vec<usize> = split
            .train_rows
            .iter()
            .chain(&split.test_rows)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn explicit_split_rejects_bad_rows() {
        let split = split_from_test_rows(5, &[3, 1]).unwrap();
        assert_eq!(split.train_rows, vec![0, 2, 4]);
        assert_eq!(split.test_rows, vec![3, 1]);
        assert!(matches!(
            split_from_test_rows(5, &[5]),
            Err(StatsError::RowOutOfRange { row: 5, n_rows: 5 })
        ));
        assert!(matches!(
            split_from_test_rows(5, &[1, 1]),
            Err(StatsError::DuplicateRow { row: 1 })
        ));
    }

    #[test]
    fn prepare_split_fits_scaler_as_asked() {
        let x = array![[0.0], [10.0], [5.0], [20.0]];
        let y = array![1.0, 2.0, 3.0, 4.0];
        let split = split_from_test_rows(4, &[3]).unwrap();
        let all = prepare_split(x.view(), y.view(), &split, ScalerFit::AllRows).unwrap();
        assert_eq!(all.x_test, array![[1.0]]);
        assert_eq!(all.x_train, array![[0.0], [0.5], [0.25]]);
        let train = prepare_split(x.view(), y.view(), &split, ScalerFit::TrainRows).unwrap();
        assert_eq!(train.x_test, array![[2.0]]);
        assert_eq!(train.y_train, array![1.0, 2.0, 3.0]);
        assert_eq!(train.y_test, array![4.0]);
    }

    #[test]
    fn kfold_covers_rows_once_with_sklearn_fold_sizes() {
        let folds = kfold_test_rows(23, 5, 1).unwrap();
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 5, 5, 4, 4]);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert!(kfold_test_rows(3, 5, 1).is_err());
    }

    #[test]
    fn cross_validation_uses_population_std() {
        let cv = CrossValidation::from_scores(vec![0.0, 1.0]);
        assert_eq!(cv.mean, 0.5);
        assert_eq!(cv.std, 0.5);
    }

    #[test]
    fn cross_validation_of_perfect_predictor_scores_one() {
        let x = Array2::from_shape_fn((20, 2), |(i, j)| (i * (j + 1)) as f64);
        let y = Array1::from_shape_fn(20, |i| 2.0 * i as f64 + 1.0);
        // The "model" recovers y exactly from the scaled first column of the same table.
        let cv = cross_validate_r2(
            x.view(),
            y.view(),
            4,
            0,
            ScalerFit::AllRows,
            |_, _, x_test| Ok(x_test.column(0).mapv(|v| 2.0 * v * 19.0 + 1.0)),
        )
        .unwrap();
        assert_eq!(cv.fold_r2.len(), 4);
        for r2 in &cv.fold_r2 {
            assert!((r2 - 1.0).abs() < 1e-12);
        }
    }
}
