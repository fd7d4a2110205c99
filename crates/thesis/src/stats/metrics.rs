//! Regression scores. R² follows scikit-learn's `r2_score` (with `force_finite`): 1 - SS_res/SS_tot,
//! and for constant true values 1.0 when predictions are perfect, else 0.0.

use ndarray::ArrayView1;

use super::{Result, StatsError};

/// Coefficient of determination of `predicted` against `observed`.
pub fn r2_score(observed: ArrayView1<'_, f64>, predicted: ArrayView1<'_, f64>) -> Result<f64> {
    if observed.len() != predicted.len() {
        return Err(StatsError::ShapeMismatch {
            what: "number of predictions vs observations",
            expected: observed.len(),
            got: predicted.len(),
        });
    }
    if observed.len() < 2 {
        return Err(StatsError::TooFewRows {
            what: "R²",
            needed: 2,
            got: observed.len(),
        });
    }
    let mean = observed.sum() / observed.len() as f64;
    let total: f64 = observed.iter().map(|o| (o - mean).powi(2)).sum();
    let residual: f64 = observed
        .iter()
        .zip(predicted.iter())
        .map(|(o, p)| (o - p).powi(2))
        .sum();
    if total == 0.0 {
        return Ok(if residual == 0.0 { 1.0 } else { 0.0 });
    }
    Ok(1.0 - residual / total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::SingleTargetRegression;
    use ndarray::array;

    #[test]
    fn r2_matches_hand_computation_and_linfa() {
        let observed = array![3.0, -0.5, 2.0, 7.0];
        let predicted = array![2.5, 0.0, 2.0, 8.0];
        // scikit-learn's docstring example gives 0.948...
        let r2 = r2_score(observed.view(), predicted.view()).unwrap();
        assert!((r2 - 0.9486081370449679).abs() < 1e-15);
        let linfa_r2 = predicted.r2(&observed).unwrap();
        assert!((r2 - linfa_r2).abs() < 1e-12);
    }

    #[test]
    fn r2_of_constant_truth_is_finite() {
        let observed = array![1.0, 1.0];
        assert_eq!(
            r2_score(observed.view(), array![1.0, 1.0].view()).unwrap(),
            1.0
        );
        assert_eq!(
            r2_score(observed.view(), array![1.0, 2.0].view()).unwrap(),
            0.0
        );
        assert!(r2_score(observed.view(), array![1.0].view()).is_err());
    }
}
