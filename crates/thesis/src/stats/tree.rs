//! CART regression tree shared by the random forest and AdaBoost, following scikit-learn's
//! `DecisionTreeRegressor` with the squared-error criterion and the best splitter: at each node
//! every feature is tried (in a random order, which only breaks ties between equally good
//! splits), thresholds lie midway between consecutive distinct sorted values, and the split with
//! the largest weighted variance reduction wins. Samples carry weights, so a bootstrap can be
//! expressed as counts. Impurity-based feature importances are normalised to sum 1.

use linfa::traits::{Fit, PredictInplace};
use linfa::DatasetBase;
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, ArrayView2, Data, Ix1, Ix2};
use rand_chacha::ChaCha8Rng;

use super::sampling::{seeded_rng, shuffle};
use super::{check_training_data, Result, StatsError};

/// Two feature values closer than this are treated as equal (scikit-learn's `FEATURE_THRESHOLD`).
const FEATURE_THRESHOLD: f64 = 1e-7;
/// A node whose impurity is at most this is pure (scikit-learn uses machine epsilon).
const PURE_IMPURITY: f64 = f64::EPSILON;

/// Hyperparameters of a regression tree.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTreeRegressorParams {
    /// `None` grows until leaves are pure or too small to split.
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Seeds the feature order tried at each node (tie-breaking only).
    pub seed: u64,
}

impl Default for DecisionTreeRegressorParams {
    fn default() -> Self {
        Self {
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            seed: 0,
        }
    }
}

impl DecisionTreeRegressorParams {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_samples_split < 2 {
            return Err(StatsError::InvalidParameter {
                name: "min_samples_split",
                reason: format!("must be at least 2, got {}", self.min_samples_split),
            });
        }
        if self.min_samples_leaf < 1 {
            return Err(StatsError::InvalidParameter {
                name: "min_samples_leaf",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.max_depth == Some(0) {
            return Err(StatsError::InvalidParameter {
                name: "max_depth",
                reason: "must be at least 1 (or None for full depth)".to_string(),
            });
        }
        Ok(())
    }

    /// Grows a tree on weighted samples; rows with weight 0 are left out, as scikit-learn does.
    pub(crate) fn fit_weighted(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        sample_weight: &[f64],
        rng: &mut ChaCha8Rng,
    ) -> Result<DecisionTreeRegressor> {
        self.validate()?;
        check_training_data(x, y, 1, "a regression tree")?;
        if sample_weight.len() != y.len() {
            return Err(StatsError::ShapeMismatch {
                what: "number of sample weights vs rows",
                expected: y.len(),
                got: sample_weight.len(),
            });
        }
        let samples: Vec<usize> = (0..y.len()).filter(|&i| sample_weight[i] > 0.0).collect();
        if samples.is_empty() {
            return Err(StatsError::InvalidParameter {
                name: "sample_weight",
                reason: "no sample has a positive weight".to_string(),
            });
        }
        // Column-major copy: the splitter reads one feature over many rows at a time.
        let columns: Vec<Vec<f64>> = x.columns().into_iter().map(|c| c.to_vec()).collect();
        let targets = y.to_vec();
        let mut builder = TreeBuilder {
            params: self,
            columns: &columns,
            targets: &targets,
            weights: sample_weight,
            rng,
            nodes: Vec::new(),
            importances: vec![0.0; x.ncols()],
            feature_order: (0..x.ncols()).collect(),
        };
        let mut samples = samples;
        builder.grow(&mut samples, 0);
        let root_weight: f64 = samples.iter().map(|&i| sample_weight[i]).sum();
        let TreeBuilder {
            nodes, importances, ..
        } = builder;
        let mut importances = Array1::from(importances) / root_weight;
        let total = importances.sum();
        if total > 0.0 {
            importances /= total;
        }
        Ok(DecisionTreeRegressor {
            nodes,
            feature_importances: importances,
        })
    }
}

/// One node of a fitted tree; children are indices into the node list.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf {
        value: f64,
    },
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
}

/// A fitted regression tree.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTreeRegressor {
    nodes: Vec<Node>,
    feature_importances: Array1<f64>,
}

impl DecisionTreeRegressor {
    /// Impurity-based importances, summing to 1 (all zero for a single-leaf tree).
    pub fn feature_importances(&self) -> &Array1<f64> {
        &self.feature_importances
    }

    /// Number of nodes, leaves included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of feature columns seen during fitting.
    pub fn n_features(&self) -> usize {
        self.feature_importances.len()
    }

    /// Prediction for one row: follow `x <= threshold` to the left down to a leaf.
    pub fn predict_row(&self, row: ArrayView1<'_, f64>) -> f64 {
        let mut index = 0;
        loop {
            match self.nodes[index] {
                Node::Leaf { value } => return value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    index = if row[feature] <= threshold {
                        left
                    } else {
                        right
                    }
                }
            }
        }
    }
}

impl<D: Data<Elem = f64>, T: Data<Elem = f64>> Fit<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>, StatsError>
    for DecisionTreeRegressorParams
{
    type Object = DecisionTreeRegressor;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>>,
    ) -> Result<DecisionTreeRegressor> {
        let weights = vec![1.0; dataset.targets.len()];
        self.fit_weighted(
            dataset.records.view(),
            dataset.targets.view(),
            &weights,
            &mut seeded_rng(self.seed),
        )
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for DecisionTreeRegressor {
    /// Panics if `x` has a different number of columns than the training data (linfa's
    /// `PredictInplace` cannot return an error; `Regressor::fit_predict` checks instead).
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(
            x.ncols(),
            self.n_features(),
            "wrong number of feature columns"
        );
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = self.predict_row(row);
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

/// Weighted sums over a set of samples, enough for the squared-error criterion.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    weight: f64,
    weighted_sum: f64,
    weighted_square_sum: f64,
}

impl Moments {
    fn add(&mut self, weight: f64, target: f64) {
        self.weight += weight;
        self.weighted_sum += weight * target;
        self.weighted_square_sum += weight * target * target;
    }

    fn mean(&self) -> f64 {
        self.weighted_sum / self.weight
    }

    /// Weighted variance of the targets (the node impurity).
    fn impurity(&self) -> f64 {
        let mean = self.mean();
        self.weighted_square_sum / self.weight - mean * mean
    }
}

struct BestSplit {
    feature: usize,
    threshold: f64,
    proxy_improvement: f64,
}

struct TreeBuilder<'a> {
    params: &'a DecisionTreeRegressorParams,
    columns: &'a [Vec<f64>],
    targets: &'a [f64],
    weights: &'a [f64],
    rng: &'a mut ChaCha8Rng,
    nodes: Vec<Node>,
    importances: Vec<f64>,
    feature_order: Vec<usize>,
}

impl TreeBuilder<'_> {
    fn moments(&self, samples: &[usize]) -> Moments {
        let mut moments = Moments::default();
        for &i in samples {
            moments.add(self.weights[i], self.targets[i]);
        }
        moments
    }

    /// Grows the subtree over `samples` (reordered in place) and returns its node index.
    fn grow(&mut self, samples: &mut [usize], depth: usize) -> usize {
        let node_index = self.nodes.len();
        let moments = self.moments(samples);
        self.nodes.push(Node::Leaf {
            value: moments.mean(),
        });
        let impurity = moments.impurity();
        let params = self.params;
        let too_deep = params.max_depth.is_some_and(|max| depth >= max);
        if too_deep
            || samples.len() < params.min_samples_split
            || samples.len() < 2 * params.min_samples_leaf
            || impurity <= PURE_IMPURITY
        {
            return node_index;
        }
        let Some(best) = self.best_split(samples, &moments) else {
            return node_index;
        };
        let column = &self.columns[best.feature];
        let mut n_left = 0;
        for position in 0..samples.len() {
            if column[samples[position]] <= best.threshold {
                samples.swap(n_left, position);
                n_left += 1;
            }
        }
        let (left_samples, right_samples) = samples.split_at_mut(n_left);
        let left_moments = self.moments(left_samples);
        let right_moments = self.moments(right_samples);
        self.importances[best.feature] += moments.weight * impurity
            - left_moments.weight * left_moments.impurity()
            - right_moments.weight * right_moments.impurity();
        let left = self.grow(left_samples, depth + 1);
        let right = self.grow(right_samples, depth + 1);
        self.nodes[node_index] = Node::Split {
            feature: best.feature,
            threshold: best.threshold,
            left,
            right,
        };
        node_index
    }

    /// The split maximising sum_left²/w_left + sum_right²/w_right (equivalent to the largest
    /// variance reduction), or `None` when every feature is constant in the node.
    fn best_split(&mut self, samples: &[usize], node: &Moments) -> Option<BestSplit> {
        let min_leaf = self.params.min_samples_leaf;
        let mut best: Option<BestSplit> = None;
        let mut order = std::mem::take(&mut self.feature_order);
        shuffle(self.rng, &mut order);
        let mut sorted = samples.to_vec();
        for &feature in &order {
            let column = &self.columns[feature];
            sorted.sort_by(|&a, &b| column[a].total_cmp(&column[b]));
            let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
                continue;
            };
            if column[last] <= column[first] + FEATURE_THRESHOLD {
                continue;
            }
            let mut left = Moments::default();
            for position in 0..sorted.len() - 1 {
                let sample = sorted[position];
                left.add(self.weights[sample], self.targets[sample]);
                let here = column[sample];
                let next = column[sorted[position + 1]];
                if next <= here + FEATURE_THRESHOLD {
                    continue;
                }
                let n_left = position + 1;
                if n_left < min_leaf || sorted.len() - n_left < min_leaf {
                    continue;
                }
                let right_weight = node.weight - left.weight;
                let right_sum = node.weighted_sum - left.weighted_sum;
                let proxy = left.weighted_sum * left.weighted_sum / left.weight
                    + right_sum * right_sum / right_weight;
                if best.as_ref().is_none_or(|b| proxy > b.proxy_improvement) {
                    let mut threshold = here / 2.0 + next / 2.0;
                    if threshold == next || !threshold.is_finite() {
                        threshold = here;
                    }
                    best = Some(BestSplit {
                        feature,
                        threshold,
                        proxy_improvement: proxy,
                    });
                }
            }
        }
        self.feature_order = order;
        best
    }
}

/// Fits a tree on the given rows with unit weights (used by AdaBoost on resampled rows).
pub(crate) fn fit_unweighted(
    params: &DecisionTreeRegressorParams,
    x: &Array2<f64>,
    y: &Array1<f64>,
    rng: &mut ChaCha8Rng,
) -> Result<DecisionTreeRegressor> {
    let weights = vec![1.0; y.len()];
    params.fit_weighted(x.view(), y.view(), &weights, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::array;

    fn fit(
        params: &DecisionTreeRegressorParams,
        x: &Array2<f64>,
        y: &Array1<f64>,
    ) -> DecisionTreeRegressor {
        params.fit(&DatasetBase::new(x.clone(), y.clone())).unwrap()
    }

    #[test]
    fn full_tree_interpolates_training_data() {
        let x = array![[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0]];
        let y = array![1.0, 5.0, 2.0, 7.0];
        let tree = fit(&DecisionTreeRegressorParams::default(), &x, &y);
        let predicted: Array1<f64> = tree.predict(&x);
        assert_eq!(predicted, y);
        assert!((tree.feature_importances().sum() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stump_picks_the_midpoint_of_the_best_gap() {
        let x = array![[0.0], [1.0], [10.0], [11.0]];
        let y = array![0.0, 0.0, 1.0, 1.0];
        let params = DecisionTreeRegressorParams {
            max_depth: Some(1),
            ..Default::default()
        };
        let tree = fit(&params, &x, &y);
        assert_eq!(tree.node_count(), 3);
        assert_eq!(
            tree.nodes[0],
            Node::Split {
                feature: 0,
                threshold: 5.5,
                left: 1,
                right: 2
            }
        );
        let predicted: Array1<f64> = tree.predict(&array![[5.4], [5.6]]);
        assert_eq!(predicted, array![0.0, 1.0]);
    }

    #[test]
    fn weights_act_like_repeated_rows() {
        let x = array![[0.0], [1.0], [2.0]];
        let y = array![0.0, 3.0, 6.0];
        let params = DecisionTreeRegressorParams {
            max_depth: Some(1),
            ..Default::default()
        };
        let weighted = params
            .fit_weighted(x.view(), y.view(), &[1.0, 3.0, 0.0], &mut seeded_rng(0))
            .unwrap();
        // Row 2 has weight 0: it is left out, so the only split separates rows 0 and 1.
        let predicted: Array1<f64> = weighted.predict(&x);
        assert_eq!(predicted, array![0.0, 3.0, 3.0]);
    }

    #[test]
    fn constant_target_gives_single_leaf_with_zero_importances() {
        let x = array![[0.0], [1.0], [2.0]];
        let y = array![4.0, 4.0, 4.0];
        let tree = fit(&DecisionTreeRegressorParams::default(), &x, &y);
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.feature_importances().sum(), 0.0);
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        let x = array![[0.0], [1.0]];
        let y = array![0.0, 1.0];
        let params = DecisionTreeRegressorParams {
            min_samples_split: 1,
            ..Default::default()
        };
        assert!(params.fit(&DatasetBase::new(x, y)).is_err());
    }
}
