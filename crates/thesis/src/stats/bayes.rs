//! Bayesian ridge regression exactly as scikit-learn's `BayesianRidge` (MacKay's evidence
//! maximisation): centre X and y, start from alpha = 1/var(y) and lambda = 1, and alternate the
//! posterior mean coef = (XᵀX + lambda/alpha · I)⁻¹ Xᵀy, computed through the SVD of X as
//! scikit-learn's `_update_coef_`, with the updates gamma = Σ alpha·s²/(lambda + alpha·s²),
//! lambda = (gamma + 2λ₁)/(|coef|² + 2λ₂), alpha = (n - gamma + 2α₁)/(SSE + 2α₂), until the
//! coefficients move by less than `tol` (L1) or `max_iter` is reached; the final coefficients are
//! recomputed with the last alpha and lambda. The SVD is a one-sided Jacobi SVD written here, so
//! no LAPACK is needed.

use linfa::traits::{Fit, PredictInplace};
use linfa::DatasetBase;
use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Axis, Data, Ix1, Ix2};

use super::{check_training_data, Result, StatsError};

/// Hyperparameters, defaulting to scikit-learn's.
#[derive(Debug, Clone, PartialEq)]
pub struct BayesianRidgeParams {
    pub max_iter: usize,
    pub tol: f64,
    /// Gamma prior (shape) on the noise precision alpha.
    pub alpha_1: f64,
    /// Gamma prior (rate) on the noise precision alpha.
    pub alpha_2: f64,
    /// Gamma prior (shape) on the weight precision lambda.
    pub lambda_1: f64,
    /// Gamma prior (rate) on the weight precision lambda.
    pub lambda_2: f64,
    /// Initial alpha; `None` means 1 / (var(y) + eps).
    pub alpha_init: Option<f64>,
    /// Initial lambda; `None` means 1.
    pub lambda_init: Option<f64>,
    pub fit_intercept: bool,
}

impl Default for BayesianRidgeParams {
    fn default() -> Self {
        Self {
            max_iter: 300,
            tol: 1e-3,
            alpha_1: 1e-6,
            alpha_2: 1e-6,
            lambda_1: 1e-6,
            lambda_2: 1e-6,
            alpha_init: None,
            lambda_init: None,
            fit_intercept: true,
        }
    }
}

/// A fitted Bayesian ridge model.
#[derive(Debug, Clone, PartialEq)]
pub struct BayesianRidge {
    coefficients: Array1<f64>,
    intercept: f64,
    alpha: f64,
    lambda: f64,
    n_iter: usize,
}

impl BayesianRidge {
    /// Posterior mean of the weights (scikit-learn's `coef_`).
    pub fn coefficients(&self) -> &Array1<f64> {
        &self.coefficients
    }

    /// scikit-learn's `intercept_`.
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Estimated noise precision (`alpha_`).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Estimated weight precision (`lambda_`).
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Iterations run (`n_iter_`).
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
}

impl BayesianRidgeParams {
    fn validate(&self) -> Result<()> {
        if self.max_iter == 0 {
            return Err(StatsError::InvalidParameter {
                name: "max_iter",
                reason: "must be at least 1".to_string(),
            });
        }
        let priors = [
            ("alpha_1", self.alpha_1),
            ("alpha_2", self.alpha_2),
            ("lambda_1", self.lambda_1),
            ("lambda_2", self.lambda_2),
            ("tol", self.tol),
        ];
        for (name, value) in priors {
            if !(value.is_finite() && value >= 0.0) {
                return Err(StatsError::InvalidParameter {
                    name,
                    reason: format!("must be finite and non-negative, got {value}"),
                });
            }
        }
        for (name, value) in [
            ("alpha_init", self.alpha_init),
            ("lambda_init", self.lambda_init),
        ] {
            if let Some(value) = value {
                if !(value.is_finite() && value > 0.0) {
                    return Err(StatsError::InvalidParameter {
                        name,
                        reason: format!("must be finite and positive, got {value}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn fit_arrays(
        &self,
        x: ArrayView2<'_, f64>,
        y: ndarray::ArrayView1<'_, f64>,
    ) -> Result<BayesianRidge> {
        self.validate()?;
        check_training_data(x, y, 2, "Bayesian ridge regression")?;
        let n_samples = x.nrows();
        let (x_offset, y_offset) = if self.fit_intercept {
            (
                x.mean_axis(Axis(0))
                    .unwrap_or_else(|| Array1::zeros(x.ncols())),
                y.sum() / n_samples as f64,
            )
        } else {
            (Array1::zeros(x.ncols()), 0.0)
        };
        let x_centered = &x - &x_offset;
        let y_centered = &y - y_offset;
        let y_mean = y.sum() / n_samples as f64;
        let y_variance = y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n_samples as f64;

        let mut alpha = self.alpha_init.unwrap_or(1.0 / (y_variance + f64::EPSILON));
        let mut lambda = self.lambda_init.unwrap_or(1.0);
        let xt_y = x_centered.t().dot(&y_centered);
        let (squared_singular_values, right_vectors) = jacobi_svd(&x_centered);
        let posterior_mean = |alpha: f64, lambda: f64| -> (Array1<f64>, f64) {
            let coefficients = ridge_solution(
                &right_vectors,
                &squared_singular_values,
                &xt_y,
                lambda / alpha,
            );
            let residual = &y_centered - &x_centered.dot(&coefficients);
            (coefficients, residual.dot(&residual))
        };

        let mut previous: Option<Array1<f64>> = None;
        let mut n_iter = 0;
        for iteration in 0..self.max_iter {
            n_iter = iteration + 1;
            let (coefficients, sse) = posterior_mean(alpha, lambda);
            let gamma: f64 = squared_singular_values
                .iter()
                .map(|s2| alpha * s2 / (lambda + alpha * s2))
                .sum();
            lambda = (gamma + 2.0 * self.lambda_1)
                / (coefficients.dot(&coefficients) + 2.0 * self.lambda_2);
            alpha = (n_samples as f64 - gamma + 2.0 * self.alpha_1) / (sse + 2.0 * self.alpha_2);
            if let Some(previous) = &previous {
                let change: f64 = previous
                    .iter()
                    .zip(&coefficients)
                    .map(|(a, b)| (a - b).abs())
                    .sum();
                if change < self.tol {
                    break;
                }
            }
            previous = Some(coefficients);
        }
        // scikit-learn recomputes the mean with the final alpha and lambda.
        let (coefficients, _) = posterior_mean(alpha, lambda);
        if !(alpha.is_finite() && lambda.is_finite() && coefficients.iter().all(|c| c.is_finite()))
        {
            return Err(StatsError::NonFinite {
                what: "Bayesian ridge estimates",
            });
        }
        let intercept = y_offset - x_offset.dot(&coefficients);
        Ok(BayesianRidge {
            coefficients,
            intercept,
            alpha,
            lambda,
            n_iter,
        })
    }
}

/// (XᵀX + ridge·I)⁻¹ Xᵀy written as V · diag(1/(s² + ridge)) · Vᵀ · Xᵀy with the full right
/// singular basis V, which covers both of scikit-learn's branches (n > p and n ≤ p).
fn ridge_solution(
    right_vectors: &Array2<f64>,
    squared_singular_values: &Array1<f64>,
    xt_y: &Array1<f64>,
    ridge: f64,
) -> Array1<f64> {
    let projected = right_vectors.t().dot(xt_y);
    let shrunk = &projected / &squared_singular_values.mapv(|s2| s2 + ridge);
    right_vectors.dot(&shrunk)
}

/// One-sided Jacobi SVD of an n×p matrix: returns the p squared singular values (zeros included
/// when p > n) and the p×p orthogonal matrix whose columns are the right singular vectors.
fn jacobi_svd(x: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    const MAX_SWEEPS: usize = 100;
    let n_columns = x.ncols();
    // Work on columns as contiguous vectors.
    let mut columns: Vec<Vec<f64>> = x.columns().into_iter().map(|c| c.to_vec()).collect();
    let mut basis: Vec<Vec<f64>> = (0..n_columns)
        .map(|j| {
            (0..n_columns)
                .map(|i| f64::from(u8::from(i == j)))
                .collect()
        })
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for j in 0..n_columns {
            for k in j + 1..n_columns {
                let norm_j = dot(&columns[j], &columns[j]);
                let norm_k = dot(&columns[k], &columns[k]);
                let overlap = dot(&columns[j], &columns[k]);
                if overlap == 0.0 || overlap.abs() <= f64::EPSILON * (norm_j * norm_k).sqrt() {
                    continue;
                }
                rotated = true;
                // Rotation that makes columns j and k orthogonal (Hestenes).
                let zeta = (norm_k - norm_j) / (2.0 * overlap);
                let tangent = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cosine = 1.0 / (1.0 + tangent * tangent).sqrt();
                let sine = cosine * tangent;
                for vectors in [&mut columns, &mut basis] {
                    let (head, tail) = vectors.split_at_mut(k);
                    for (a, b) in head[j].iter_mut().zip(tail[0].iter_mut()) {
                        let (old_a, old_b) = (*a, *b);
                        *a = cosine * old_a - sine * old_b;
                        *b = sine * old_a + cosine * old_b;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let squared = Array1::from_iter(columns.iter().map(|c| dot(c, c)));
    let right_vectors = Array2::from_shape_fn((n_columns, n_columns), |(i, j)| basis[j][i]);
    (squared, right_vectors)
}

impl<D: Data<Elem = f64>, T: Data<Elem = f64>> Fit<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>, StatsError>
    for BayesianRidgeParams
{
    type Object = BayesianRidge;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, ArrayBase<T, Ix1>>,
    ) -> Result<BayesianRidge> {
        self.fit_arrays(dataset.records.view(), dataset.targets.view())
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for BayesianRidge {
    /// Panics if `x` has a different number of columns than the training data (linfa's
    /// `PredictInplace` cannot return an error; `Regressor::fit_predict` checks instead).
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(
            x.ncols(),
            self.coefficients.len(),
            "wrong number of feature columns"
        );
        *y = x.dot(&self.coefficients) + self.intercept;
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Predict;
    use ndarray::array;

    #[test]
    fn jacobi_svd_reconstructs_gram_matrix() {
        let x = array![
            [1.0, 2.0, 0.5],
            [0.0, 1.0, -1.0],
            [3.0, -1.0, 2.0],
            [1.0, 1.0, 1.0]
        ];
        let (squared, v) = jacobi_svd(&x);
        let gram = x.t().dot(&x);
        let rebuilt = v.dot(&Array2::from_diag(&squared)).dot(&v.t());
        for (a, b) in gram.iter().zip(rebuilt.iter()) {
            assert!((a - b).abs() < 1e-12);
        }
        let identity = v.t().dot(&v);
        for ((i, j), value) in identity.indexed_iter() {
            assert!((value - f64::from(u8::from(i == j))).abs() < 1e-12);
        }
    }

    #[test]
    fn wide_matrix_keeps_full_basis() {
        let x = array![[1.0, 2.0, 3.0], [0.0, 1.0, 4.0]];
        let (squared, v) = jacobi_svd(&x);
        assert_eq!(v.dim(), (3, 3));
        assert_eq!(squared.iter().filter(|s| **s < 1e-20).count(), 1);
    }

    #[test]
    fn recovers_a_noiseless_linear_law_approximately() {
        let x = Array2::from_shape_fn((30, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
        let y = x.column(0).mapv(|v| 2.0 * v) - x.column(1).mapv(|v| 0.5 * v) + 1.0;
        let noisy = &y + &Array1::from_shape_fn(30, |i| if i % 2 == 0 { 1e-3 } else { -1e-3 });
        let model = BayesianRidgeParams::default()
            .fit(&DatasetBase::new(x.clone(), noisy))
            .unwrap();
        assert!((model.coefficients()[0] - 2.0).abs() < 1e-3);
        assert!((model.coefficients()[1] + 0.5).abs() < 1e-3);
        assert!((model.intercept() - 1.0).abs() < 1e-2);
        let predicted: Array1<f64> = model.predict(&x);
        assert!((predicted[3] - y[3]).abs() < 1e-2);
    }

    #[test]
    fn rejects_mismatched_or_tiny_input() {
        let params = BayesianRidgeParams::default();
        assert!(params
            .fit(&DatasetBase::new(array![[1.0]], array![1.0]))
            .is_err());
        let bad = BayesianRidgeParams {
            max_iter: 0,
            ..Default::default()
        };
        assert!(bad
            .fit(&DatasetBase::new(array![[1.0], [2.0]], array![1.0, 2.0]))
            .is_err());
    }
}
