//! Statistics for the performance-prediction experiment (thesis ch. 6, SPEC §5): MinMax scaling,
//! seeded and explicit train/test splits, k-fold cross-validation, Pearson correlation with
//! p-values, R², and three regressors that linfa 0.8 lacks (Bayesian ridge, random-forest and
//! AdaBoost.R2 regression over a shared CART tree). The regressors implement linfa's `Fit` and
//! `PredictInplace` traits (so `Predict` works through linfa's blanket impls) and reproduce
//! scikit-learn's algorithms; every random choice comes from a `ChaCha8Rng` seeded with
//! `seed_from_u64`, so a seed fixes the result on every machine.

pub mod adaboost;
pub mod bayes;
pub mod correlation;
pub mod forest;
pub mod metrics;
pub mod preprocess;
mod sampling;
pub mod tree;

pub use adaboost::{AdaBoostRegressor, AdaBoostRegressorParams};
pub use bayes::{BayesianRidge, BayesianRidgeParams};
pub use correlation::{pearson, pearson_columns, Correlation};
pub use forest::{RandomForestRegressor, RandomForestRegressorParams};
pub use metrics::r2_score;
pub use preprocess::{
    cross_validate_r2, kfold_test_rows, prepare_split, shuffled_split, split_from_test_rows,
    CrossValidation, MinMaxScaler, PreparedSplit, ScalerFit, TrainTestSplit,
};
pub use tree::{DecisionTreeRegressor, DecisionTreeRegressorParams};

use linfa::prelude::Predict;
use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{what} needs at least {needed} rows, got {got}")]
    TooFewRows {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{what}: the values are constant, so the result is undefined")]
    ConstantColumn { what: String },
    #[error("{what}: expected {expected}, got {got}")]
    ShapeMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("parameter `{name}` is invalid: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error("row {row} is out of range for a table of {n_rows} rows")]
    RowOutOfRange { row: usize, n_rows: usize },
    #[error("row {row} is listed twice among the test rows")]
    DuplicateRow { row: usize },
    #[error("{what} contains a value that is NaN or infinite")]
    NonFinite { what: &'static str },
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// Shorthand for results in this module.
pub type Result<T> = std::result::Result<T, StatsError>;

/// The three regressors of thesis Table 6.5 behind one value, so a stage can pick one by name
/// and a cross-validation can fit any of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Regressor {
    BayesianRidge(BayesianRidgeParams),
    RandomForest(RandomForestRegressorParams),
    AdaBoost(AdaBoostRegressorParams),
}

impl Regressor {
    /// A short stable name, as used in the thesis's `r_squared.csv` header.
    pub fn name(&self) -> &'static str {
        match self {
            Regressor::BayesianRidge(_) => "BayesianRidge",
            Regressor::RandomForest(_) => "RandomForestRegressor",
            Regressor::AdaBoost(_) => "AdaBoostRegressor",
        }
    }

    /// Fits on the training rows and predicts the test rows (an error, not a panic, when their
    /// column counts differ).
    pub fn fit_predict(
        &self,
        x_train: ArrayView2<'_, f64>,
        y_train: ArrayView1<'_, f64>,
        x_test: ArrayView2<'_, f64>,
    ) -> Result<Array1<f64>> {
        // linfa's `Predict` cannot fail, so catch a column mismatch here rather than panic there.
        if x_test.ncols() != x_train.ncols() {
            return Err(StatsError::ShapeMismatch {
                what: "number of feature columns in the rows to predict",
                expected: x_train.ncols(),
                got: x_test.ncols(),
            });
        }
        let dataset = DatasetBase::new(x_train, y_train);
        Ok(match self {
            Regressor::BayesianRidge(params) => params.fit(&dataset)?.predict(&x_test),
            Regressor::RandomForest(params) => params.fit(&dataset)?.predict(&x_test),
            Regressor::AdaBoost(params) => params.fit(&dataset)?.predict(&x_test),
        })
    }

    /// Fits on the given rows and returns what the thesis's `feature_importance_*.csv` lists:
    /// the coefficients for the Bayesian ridge, impurity-based importances for the tree ensembles.
    pub fn fit_importances(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
    ) -> Result<Array1<f64>> {
        let dataset = DatasetBase::new(x, y);
        Ok(match self {
            Regressor::BayesianRidge(params) => params.fit(&dataset)?.coefficients().clone(),
            Regressor::RandomForest(params) => params.fit(&dataset)?.feature_importances().clone(),
            Regressor::AdaBoost(params) => params.fit(&dataset)?.feature_importances().clone(),
        })
    }
}

/// Checks that a feature matrix and a target agree in length, have rows, and are finite.
pub(crate) fn check_training_data(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    needed_rows: usize,
    what: &'static str,
) -> Result<()> {
    if x.nrows() != y.len() {
        return Err(StatsError::ShapeMismatch {
            what: "number of targets vs feature rows",
            expected: x.nrows(),
            got: y.len(),
        });
    }
    if x.nrows() < needed_rows {
        return Err(StatsError::TooFewRows {
            what,
            needed: needed_rows,
            got: x.nrows(),
        });
    }
    if x.ncols() == 0 {
        return Err(StatsError::InvalidParameter {
            name: "features",
            reason: "the feature matrix has no columns".to_string(),
        });
    }
    if !x.iter().all(|v| v.is_finite()) {
        return Err(StatsError::NonFinite { what: "features" });
    }
    if !y.iter().all(|v| v.is_finite()) {
        return Err(StatsError::NonFinite { what: "targets" });
    }
    Ok(())
}

/// Owned copy of selected rows, used by splits and resampling.
pub(crate) fn select_rows(x: ArrayView2<'_, f64>, rows: &[usize]) -> Array2<f64> {
    x.select(ndarray::Axis(0), rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn fit_predict_rejects_column_mismatch() {
        let x = array![[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]];
        let y = array![0.0, 1.0, 2.0];
        let regressor = Regressor::BayesianRidge(BayesianRidgeParams::default());
        let wrong = array![[1.0]];
        assert!(matches!(
            regressor.fit_predict(x.view(), y.view(), wrong.view()),
            Err(StatsError::ShapeMismatch { .. })
        ));
        assert_eq!(regressor.name(), "BayesianRidge");
    }

    #[test]
    fn training_data_checks_catch_bad_input() {
        let x = array![[0.0], [f64::NAN]];
        let y = array![0.0, 1.0];
        assert!(matches!(
            check_training_data(x.view(), y.view(), 2, "test"),
            Err(StatsError::NonFinite { .. })
        ));
        assert!(matches!(
            check_training_data(x.view(), array![0.0].view(), 1, "test"),
            Err(StatsError::ShapeMismatch { .. })
        ));
    }
}
