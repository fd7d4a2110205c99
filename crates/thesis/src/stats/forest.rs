//! Random-forest regression as scikit-learn's `RandomForestRegressor` with the thesis's settings:
//! 100 fully grown CART trees, each on a bootstrap sample expressed as per-row counts (sample
//! weights, as scikit-learn does), every feature considered at every split, prediction = mean of
//! the trees. Importances are the mean of the trees' normalised impurity importances,
//! renormalised to sum 1. Tree seeds are drawn in order from the master seed, so the forest is
//! the same however it is scheduled.

use linfa::traits::{Fit, PredictInplace};
use linfa::DatasetBase;
use ndarray::{Array1, ArrayBase, Data, Ix1, Ix2};
use rand::RngCore;

use super::sampling::{seeded_rng, uniform_index};
use super::tree::{DecisionTreeRegressor, DecisionTreeRegressorParams};
use super::{check_training_data, Result, StatsError};

/// Hyperparameters, defaulting to scikit-learn's regressor defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomForestRegressorParams {
    pub n_trees: usize,
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Draw each tree's rows with replacement; `false` gives every tree all rows.
    pub bootstrap: bool,
    pub seed: u64,
}

impl Default for RandomForestRegressorParams {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            bootstrap: true,
            seed: 0,
        }
    }
}

/// A fitted forest.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomForestRegressor {
    trees: Vec<DecisionTreeRegressor>,
    feature_importances: Array1<f64>,
}

impl RandomForestRegressor {
    /// Impurity-based importances, summing to 1 (all zero if no tree ever split).
    pub fn feature_importances(&self) -> &Array1<f64> {
        &self.feature_importances
    }

    /// The fitted trees, in seed order.
    pub fn trees(&self) -> &[DecisionTreeRegressor] {
        &self.trees
    }
}

impl<D: Data<Elem = f64>, T: Data<Elem = f64>> Fit<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>, StatsError>
    for RandomForestRegressorParams
{
    type Object = RandomForestRegressor;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>>,
    ) -> Result<RandomForestRegressor> {
        if self.n_trees == 0 {
            return Err(StatsError::InvalidParameter {
                name: "n_trees",
                reason: "must be at least 1".to_string(),
            });
        }
        let x = dataset.records.view();
        let y = dataset.targets.view();
        check_training_data(x, y, 2, "a random forest")?;
        let tree_params = DecisionTreeRegressorParams {
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            seed: 0,
        };
        tree_params.validate()?;
        let n_rows = y.len();
        let mut master = seeded_rng(self.seed);
        let tree_seeds: Vec<u64> = (0..self.n_trees).map(|_| master.next_u64()).collect();
        let mut trees = Vec::with_capacity(self.n_trees);
        for tree_seed in tree_seeds {
            let mut rng = seeded_rng(tree_seed);
            let counts = if self.bootstrap {
                let mut counts = vec![0.0; n_rows];
                for _ in 0..n_rows {
                    counts[uniform_index(&mut rng, n_rows)] += 1.0;
                }
                counts
            } else {
                vec![1.0; n_rows]
            };
            trees.push(tree_params.fit_weighted(x, y, &counts, &mut rng)?);
        }
        // As scikit-learn: average over trees that split at least once, then renormalise.
        let mut importances = Array1::zeros(x.ncols());
        let mut splitting_trees = 0usize;
        for tree in trees.iter().filter(|tree| tree.node_count() > 1) {
            importances += tree.feature_importances();
            splitting_trees += 1;
        }
        let total = importances.sum();
        if splitting_trees > 0 && total > 0.0 {
            importances /= total;
        }
        Ok(RandomForestRegressor {
            trees,
            feature_importances: importances,
        })
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for RandomForestRegressor {
    /// Panics if `x` has a different number of columns than the training data (linfa's
    /// `PredictInplace` cannot return an error; `Regressor::fit_predict` checks instead).
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        if let Some(first) = self.trees.first() {
            assert_eq!(
                x.ncols(),
                first.n_features(),
                "wrong number of feature columns"
            );
        }
        let n_trees = self.trees.len() as f64;
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = self
                .trees
                .iter()
                .map(|tree| tree.predict_row(row))
                .sum::<f64>()
                / n_trees;
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::Array2;

    fn table() -> (Array2<f64>, Array1<f64>) {
        let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * (j + 3) * 7) % 17) as f64);
        let y = x.column(0).mapv(|v| (v / 3.0).sin()) + x.column(1).mapv(|v| 0.1 * v);
        (x, y)
    }

    #[test]
    fn same_seed_same_forest_other_seed_other_forest() {
        let (x, y) = table();
        let dataset = DatasetBase::new(x.clone(), y);
        let params = RandomForestRegressorParams {
            n_trees: 10,
            seed: 5,
            ..Default::default()
        };
        let a: Array1<f64> = params.fit(&dataset).unwrap().predict(&x);
        let b: Array1<f64> = params.fit(&dataset).unwrap().predict(&x);
        let other = RandomForestRegressorParams { seed: 6, ..params };
        let c: Array1<f64> = other.fit(&dataset).unwrap().predict(&x);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn importances_sum_to_one_and_favour_informative_columns() {
        let (x, y) = table();
        let forest = RandomForestRegressorParams {
            n_trees: 20,
            ..Default::default()
        }
        .fit(&DatasetBase::new(x, y))
        .unwrap();
        let importances = forest.feature_importances();
        assert!((importances.sum() - 1.0).abs() < 1e-12);
        assert!(importances[2] < importances[0] + importances[1]);
    }

    #[test]
    fn without_bootstrap_full_trees_interpolate() {
        let (x, y) = table();
        let forest = RandomForestRegressorParams {
            n_trees: 3,
            bootstrap: false,
            ..Default::default()
        }
        .fit(&DatasetBase::new(x.clone(), y.clone()))
        .unwrap();
        let predicted: Array1<f64> = forest.predict(&x);
        for (p, t) in predicted.iter().zip(&y) {
            assert!((p - t).abs() < 1e-12);
        }
    }
}
