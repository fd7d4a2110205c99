//! The regression section: R² of the regressors beside the thesis's.

use std::fmt::Write as _;

use crate::analysis;
use crate::report::common::{fmt, for_variant, not_run, r2_rows};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};

pub(in crate::report) fn regression_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "regression",
        "8. Performance prediction: R² (Table 6.5) and RF subsets (Tables B.1/B.2)",
    );
    if inputs.r2.is_empty() {
        html.missing.push("regression".into());
        html.body
            .push_str(&not_run("regression (analysis.regress)"));
    }
    html.body.push_str(r#"<p class="note">R² on the 20 held-out rows (thesis | pipe), and pipe's k-fold cross-validated R² (mean ± std). Random forest and AdaBoost were unseeded in the thesis and match only in kind.</p><table><tr><th>variant</th><th>model</th><th>thesis R²</th><th>pipe R² (split)</th><th>pipe R² (CV)</th></tr>"#);
    let models = [
        "BayesianRidge",
        "RandomForestRegressor",
        "AdaBoostRegressor",
    ];
    for variant in Variant::ALL {
        let theirs = thesis::r_squared(variant);
        let ours = for_variant(&inputs.r2, variant)
            .first()
            .map(|(_, t)| r2_rows(t));
        for (i, model) in models.iter().enumerate() {
            let our = ours.as_ref().and_then(|m| m.get(*model).copied());
            let cv = match our {
                Some([_, Some(m), Some(s)]) => format!("{m:.4} ± {s:.4}"),
                _ => "—".into(),
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{model}</td><td>{}</td><td>{}</td><td>{cv}</td></tr>",
                variant.title(),
                fmt(theirs.map(|t| t[i]), 5),
                if ours.is_some() {
                    fmt(our.and_then(|o| o[0]), 5)
                } else {
                    "not run".into()
                }
            );
        }
    }
    html.body.push_str("</table><h3>Random forest on feature subsets (Tables B.1/B.2)</h3><table><tr><th>variant</th><th>subset</th><th>thesis R²</th><th>pipe R² (split)</th><th>pipe R² (CV)</th></tr>");
    for variant in Variant::ALL {
        let ours = for_variant(&inputs.subsets, variant)
            .first()
            .map(|(_, t)| r2_rows(t));
        for (subset, _) in analysis::feature_subsets() {
            let our = ours.as_ref().and_then(|m| m.get(subset).copied());
            let cv = match our {
                Some([_, Some(m), Some(s)]) => format!("{m:.3} ± {s:.3}"),
                _ => "—".into(),
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{subset}</td><td>{}</td><td>{}</td><td>{cv}</td></tr>",
                variant.title(),
                fmt(thesis::rf_subset_r2(variant, subset), 2),
                if ours.is_some() {
                    fmt(our.and_then(|o| o[0]), 3)
                } else {
                    "not run".into()
                }
            );
        }
    }
    html.body.push_str("</table>");
}
