//! AdaBoost.R2 regression (Drucker 1997) as scikit-learn's `AdaBoostRegressor`: each round fits a
//! depth-3 CART tree on a weighted bootstrap of the training rows (rows drawn with probability
//! equal to their boosting weight, as numpy's `choice(p=…)`), scores every training row by its
//! linear loss |error| / max |error|, stops when the weighted loss reaches 0.5, and otherwise
//! gives the tree the weight ln(1/β) with β = loss/(1 - loss) and shrinks the weights of
//! well-predicted rows by β^(1 - loss). The prediction is the weighted median of the trees;
//! importances are the trees' importances averaged with the tree weights.

use linfa::traits::{Fit, PredictInplace};
use linfa::DatasetBase;
use ndarray::{Array1, ArrayBase, ArrayView1, ArrayView2, Axis, Data, Ix1, Ix2};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::sampling::{seeded_rng, uniform_unit};
use super::tree::{fit_unweighted, DecisionTreeRegressor, DecisionTreeRegressorParams};
use super::{check_training_data, select_rows, Result, StatsError};

/// Hyperparameters, defaulting to scikit-learn's (linear loss, learning rate 1) with depth-3 trees.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaBoostRegressorParams {
    pub n_estimators: usize,
    pub learning_rate: f64,
    /// Depth of each boosted tree.
    pub max_depth: usize,
    pub seed: u64,
}

impl Default for AdaBoostRegressorParams {
    fn default() -> Self {
        Self {
            n_estimators: 50,
            learning_rate: 1.0,
            max_depth: 3,
            seed: 0,
        }
    }
}

/// A fitted AdaBoost.R2 ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaBoostRegressor {
    trees: Vec<DecisionTreeRegressor>,
    /// ln(1/β) per kept tree (times the learning rate).
    tree_weights: Vec<f64>,
    feature_importances: Array1<f64>,
}

impl AdaBoostRegressor {
    /// Tree-weighted mean of the trees' importances, summing to 1.
    pub fn feature_importances(&self) -> &Array1<f64> {
        &self.feature_importances
    }

    /// Number of trees kept (boosting may stop before `n_estimators`).
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// The weight of each kept tree.
    pub fn tree_weights(&self) -> &[f64] {
        &self.tree_weights
    }

    /// Weighted median of the trees' predictions for one row: the lowest prediction at which the
    /// cumulative tree weight reaches half the total.
    fn predict_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        let mut predictions: Vec<(f64, f64)> = self
            .trees
            .iter()
            .zip(&self.tree_weights)
            .map(|(tree, &weight)| (tree.predict_row(row), weight))
            .collect();
        predictions.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = 0.5 * self.tree_weights.iter().sum::<f64>();
        let mut cumulative = 0.0;
        for &(prediction, weight) in &predictions {
            cumulative += weight;
            if cumulative >= half {
                return prediction;
            }
        }
        predictions.last().map_or(0.0, |p| p.0)
    }
}

/// What one boosting round produced.
enum Round {
    /// Keep the tree with this weight; `stop` ends boosting after it.
    Keep { weight: f64, stop: bool },
    /// The tree is no better than chance: drop it (unless it is the only one) and stop.
    Discard,
}

impl AdaBoostRegressorParams {
    fn validate(&self) -> Result<()> {
        if self.n_estimators == 0 {
            return Err(StatsError::InvalidParameter {
                name: "n_estimators",
                reason: "must be at least 1".to_string(),
            });
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(StatsError::InvalidParameter {
                name: "learning_rate",
                reason: format!("must be positive, got {}", self.learning_rate),
            });
        }
        Ok(())
    }

    fn fit_arrays(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
    ) -> Result<AdaBoostRegressor> {
        self.validate()?;
        check_training_data(x, y, 2, "AdaBoost regression")?;
        let n_rows = y.len();
        let mut rng = seeded_rng(self.seed);
        let mut sample_weight = vec![1.0 / n_rows as f64; n_rows];
        let mut trees = Vec::new();
        let mut tree_weights = Vec::new();
        for round in 0..self.n_estimators {
            // Keep weights off exact zero (scikit-learn issue #20320).
            for weight in &mut sample_weight {
                *weight = weight.max(f64::EPSILON);
            }
            let is_last = round + 1 == self.n_estimators;
            let (tree, outcome) = self.boost(x, y, &mut sample_weight, is_last, &mut rng)?;
            match outcome {
                Round::Discard => {
                    if trees.is_empty() {
                        trees.push(tree);
                        tree_weights.push(0.0);
                    }
                    break;
                }
                Round::Keep { weight, stop } => {
                    trees.push(tree);
                    tree_weights.push(weight);
                    if stop {
                        break;
                    }
                }
            }
            let total: f64 = sample_weight.iter().sum();
            if !total.is_finite() || total <= 0.0 {
                break;
            }
            if !is_last {
                for weight in &mut sample_weight {
                    *weight /= total;
                }
            }
        }
        let feature_importances = weighted_importances(&trees, &tree_weights, x.ncols());
        Ok(AdaBoostRegressor {
            trees,
            tree_weights,
            feature_importances,
        })
    }

    /// One AdaBoost.R2 round (scikit-learn's `_boost` with linear loss).
    fn boost(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        sample_weight: &mut [f64],
        is_last: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<(DecisionTreeRegressor, Round)> {
        // As scikit-learn: the tree's own seed is drawn before the bootstrap rows.
        let mut tree_rng = seeded_rng(rng.next_u64());
        let rows = weighted_bootstrap(sample_weight, rng);
        let tree_params = DecisionTreeRegressorParams {
            max_depth: Some(self.max_depth),
            ..Default::default()
        };
        let tree = fit_unweighted(
            &tree_params,
            &select_rows(x, &rows),
            &y.select(Axis(0), &rows),
            &mut tree_rng,
        )?;
        let errors: Vec<f64> = x
            .rows()
            .into_iter()
            .zip(y.iter())
            .map(|(row, target)| (tree.predict_row(row) - target).abs())
            .collect();
        let max_error = errors.iter().copied().fold(0.0, f64::max);
        let losses: Vec<f64> = if max_error > 0.0 {
            errors.iter().map(|e| e / max_error).collect()
        } else {
            errors
        };
        let average_loss: f64 = sample_weight.iter().zip(&losses).map(|(w, l)| w * l).sum();
        if average_loss <= 0.0 {
            // A perfect fit: scikit-learn keeps it with weight 1 and stops.
            return Ok((
                tree,
                Round::Keep {
                    weight: 1.0,
                    stop: true,
                },
            ));
        }
        if average_loss >= 0.5 {
            return Ok((tree, Round::Discard));
        }
        let beta = average_loss / (1.0 - average_loss);
        let tree_weight = self.learning_rate * (1.0 / beta).ln();
        if !is_last {
            for (weight, loss) in sample_weight.iter_mut().zip(&losses) {
                *weight *= beta.powf((1.0 - loss) * self.learning_rate);
            }
        }
        Ok((
            tree,
            Round::Keep {
                weight: tree_weight,
                stop: false,
            },
        ))
    }
}

/// n row indices drawn with replacement, row i with probability weight_i / Σ weight, by
/// inverting the cumulative distribution (numpy's `choice(p=…)` does the same).
fn weighted_bootstrap(sample_weight: &[f64], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut cumulative: Vec<f64> = sample_weight
        .iter()
        .scan(0.0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(1.0);
    for value in &mut cumulative {
        *value /= total;
    }
    let last_row = sample_weight.len().saturating_sub(1);
    (0..sample_weight.len())
        .map(|_| {
            let u = uniform_unit(rng);
            // First row whose cumulative share exceeds u (searchsorted, side = right).
            cumulative.partition_point(|&c| c <= u).min(last_row)
        })
        .collect()
}

fn weighted_importances(
    trees: &[DecisionTreeRegressor],
    weights: &[f64],
    n_features: usize,
) -> Array1<f64> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        // Only a single chance-level tree was kept; report its own importances.
        return trees.first().map_or_else(
            || Array1::zeros(n_features),
            |tree| tree.feature_importances().clone(),
        );
    }
    let mut importances = Array1::zeros(n_features);
    for (tree, weight) in trees.iter().zip(weights) {
        importances.scaled_add(*weight, tree.feature_importances());
    }
    importances / total
}

impl<D: Data<Elem = f64>, T: Data<Elem = f64>> Fit<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>, StatsError>
    for AdaBoostRegressorParams
{
    type Object = AdaBoostRegressor;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>>,
    ) -> Result<AdaBoostRegressor> {
        self.fit_arrays(dataset.records.view(), dataset.targets.view())
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for AdaBoostRegressor {
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
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = self.predict_row(row);
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
        let x = Array2::from_shape_fn((60, 3), |(i, j)| ((i * (j + 2) * 5) % 23) as f64 / 23.0);
        let y = x.column(0).mapv(|v| (3.0 * v).sin()) + x.column(1).mapv(|v| v * v);
        (x, y)
    }

    #[test]
    fn same_seed_same_predictions() {
        let (x, y) = table();
        let dataset = DatasetBase::new(x.clone(), y);
        let params = AdaBoostRegressorParams {
            seed: 11,
            ..Default::default()
        };
        let a: Array1<f64> = params.fit(&dataset).unwrap().predict(&x);
        let b: Array1<f64> = params.fit(&dataset).unwrap().predict(&x);
        assert_eq!(a, b);
    }

    #[test]
    fn fits_and_importances_sum_to_one() {
        let (x, y) = table();
        let model = AdaBoostRegressorParams::default()
            .fit(&DatasetBase::new(x.clone(), y.clone()))
            .unwrap();
        assert!(model.n_trees() >= 1);
        assert!((model.feature_importances().sum() - 1.0).abs() < 1e-12);
        let predicted: Array1<f64> = model.predict(&x);
        let r2 = crate::stats::r2_score(y.view(), predicted.view()).unwrap();
        assert!(r2 > 0.8, "training R² {r2}");
    }

    #[test]
    fn weighted_median_takes_lowest_value_reaching_half() {
        let x = Array2::from_shape_fn((4, 1), |(i, _)| i as f64);
        let stump = |value: f64| {
            // A tree fitted on a constant target is a single leaf predicting that value.
            DecisionTreeRegressorParams::default()
                .fit(&DatasetBase::new(x.clone(), Array1::from_elem(4, value)))
                .unwrap()
        };
        let model = AdaBoostRegressor {
            trees: vec![stump(3.0), stump(1.0), stump(2.0)],
            tree_weights: vec![1.0, 1.0, 2.0],
            feature_importances: Array1::zeros(1),
        };
        // Sorted: 1 (w 1), 2 (w 2), 3 (w 1); half of 4 is reached at 2.
        assert_eq!(model.predict_row(x.row(0)), 2.0);
    }

    #[test]
    fn weighted_bootstrap_never_picks_zero_weight_rows() {
        let mut rng = seeded_rng(0);
        let rows = weighted_bootstrap(&[0.0, 1.0, 0.0, 3.0], &mut rng);
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|&r| r == 1 || r == 3));
    }
}
