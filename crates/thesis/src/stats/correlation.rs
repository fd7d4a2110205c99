//! Pearson correlation with its two-sided p-value, as `scipy.stats.pearsonr`: under independence
//! r follows a Beta(n/2 - 1, n/2 - 1) law on [-1, 1] (equivalently t with n - 2 degrees of
//! freedom), so p = 2 · I_{(1-|r|)/2}(n/2 - 1, n/2 - 1) with I the regularized incomplete beta
//! function, computed here by Lentz's continued fraction.

use ndarray::{ArrayView1, ArrayView2, Axis};

use super::{Result, StatsError};

/// Pearson's r between two samples and the two-sided p-value for r = 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlation {
    pub r: f64,
    pub p_value: f64,
    /// Number of paired observations.
    pub n: usize,
}

/// Pearson correlation of `x` and `y`; a constant sample is an error (scipy returns NaN).
pub fn pearson(x: ArrayView1<'_, f64>, y: ArrayView1<'_, f64>) -> Result<Correlation> {
    if x.len() != y.len() {
        return Err(StatsError::ShapeMismatch {
            what: "length of the two samples",
            expected: x.len(),
            got: y.len(),
        });
    }
    let n = x.len();
    if n < 2 {
        return Err(StatsError::TooFewRows {
            what: "Pearson correlation",
            needed: 2,
            got: n,
        });
    }
    if !x.iter().chain(y.iter()).all(|v| v.is_finite()) {
        return Err(StatsError::NonFinite {
            what: "Pearson correlation input",
        });
    }
    let x_centered = centered(x, "first sample")?;
    let y_centered = centered(y, "second sample")?;
    // Normalise before the dot product, as scipy does, to avoid overflow on large values.
    let x_unit = &x_centered / norm(&x_centered);
    let y_unit = &y_centered / norm(&y_centered);
    let r = x_unit.dot(&y_unit).clamp(-1.0, 1.0);
    let p_value = if n == 2 {
        // Two points always lie on a line; scipy reports p = 1.
        1.0
    } else {
        let shape = n as f64 / 2.0 - 1.0;
        (2.0 * regularized_incomplete_beta(shape, shape, 0.5 * (1.0 - r.abs()))).min(1.0)
    };
    Ok(Correlation { r, p_value, n })
}

/// Pearson correlation of every column of `x` with `y`.
pub fn pearson_columns(x: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>) -> Result<Vec<Correlation>> {
    x.axis_iter(Axis(1))
        .map(|column| pearson(column, y))
        .collect()
}

fn centered(values: ArrayView1<'_, f64>, what: &str) -> Result<ndarray::Array1<f64>> {
    let mean = values.sum() / values.len() as f64;
    let centered = values.mapv(|v| v - mean);
    if centered.iter().all(|&v| v == 0.0) {
        return Err(StatsError::ConstantColumn {
            what: format!("Pearson correlation ({what})"),
        });
    }
    Ok(centered)
}

fn norm(values: &ndarray::Array1<f64>) -> f64 {
    values.dot(values).sqrt()
}

/// I_x(a, b), the regularized incomplete beta function, for a, b > 0 and x in [0, 1].
pub(crate) fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let log_front = a * x.ln() + b * (1.0 - x).ln() - log_beta(a, b);
    // The continued fraction converges fast only below the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        log_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - log_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

/// Continued fraction for the incomplete beta function (modified Lentz, Numerical Recipes §6.4).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const MAX_TERMS: usize = 10_000;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut fraction = d;
    for m in 1..=MAX_TERMS {
        let m = m as f64;
        let even_term = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        let odd_term = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        for term in [even_term, odd_term] {
            d = 1.0 + term * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + term / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            fraction *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    fraction
}

fn log_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 terms; relative error ~1e-15).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut series = COEFFICIENTS[0];
    for (i, coefficient) in COEFFICIENTS.iter().enumerate().skip(1) {
        series += coefficient / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut factorial = 1.0_f64;
        for n in 1..30 {
            factorial *= n as f64;
            let relative =
                (ln_gamma(n as f64 + 1.0) - factorial.ln()).abs() / factorial.ln().max(1.0);
            assert!(relative < 1e-13, "n = {n}");
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
    }

    #[test]
    fn incomplete_beta_known_values() {
        // I_x(1, 1) = x; I_x(a, b) = 1 - I_{1-x}(b, a); I_0.5(a, a) = 0.5.
        assert!((regularized_incomplete_beta(1.0, 1.0, 0.3) - 0.3).abs() < 1e-15);
        assert!((regularized_incomplete_beta(7.5, 7.5, 0.5) - 0.5).abs() < 1e-14);
        let left = regularized_incomplete_beta(2.0, 5.0, 0.2);
        let right = regularized_incomplete_beta(5.0, 2.0, 0.8);
        assert!((left + right - 1.0).abs() < 1e-14);
        // I_x(2, 3) = 6x²/2 - 8x³/3 · ... closed form: x²(6 - 8x + 3x²)
        let x: f64 = 0.35;
        let closed = x * x * (6.0 - 8.0 * x + 3.0 * x * x);
        assert!((regularized_incomplete_beta(2.0, 3.0, x) - closed).abs() < 1e-14);
    }

    #[test]
    fn pearson_on_small_sample_matches_scipy() {
        // scipy.stats.pearsonr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) = (0.8, 0.10408803866182782)
        let result = pearson(
            array![1.0, 2.0, 3.0, 4.0, 5.0].view(),
            array![2.0, 1.0, 4.0, 3.0, 5.0].view(),
        )
        .unwrap();
        assert!((result.r - 0.8).abs() < 1e-14);
        assert!((result.p_value - 0.10408803866182782).abs() < 1e-12);
    }

    #[test]
    fn pearson_rejects_constant_and_short_input() {
        let constant = pearson(array![1.0, 1.0, 1.0].view(), array![1.0, 2.0, 3.0].view());
        assert!(matches!(constant, Err(StatsError::ConstantColumn { .. })));
        assert!(pearson(array![1.0].view(), array![1.0].view()).is_err());
        let two = pearson(array![1.0, 2.0].view(), array![3.0, 1.0].view()).unwrap();
        assert!((two.r + 1.0).abs() < 1e-12);
        assert_eq!(two.p_value, 1.0);
    }
}
