//! The Markdown summary: what ran, the headline numbers beside the thesis's.

use std::fmt::Write as _;

use crate::report::common::{
    fmt, for_variant, numbers, our_correlations, r2_rows, rows_where, thesis_correlations,
};
use crate::report::thesis;
use crate::report::{ReportInputs, RunInfo, Variant, VariantText};

/// A short Markdown summary: what ran, the headline numbers beside the thesis's.
pub fn render_summary(inputs: &ReportInputs, run: &RunInfo) -> String {
    let mut md = format!("# {}\n\n", run.title);
    let _ = writeln!(
        md,
        "- report instance: `{}`, seed {}",
        run.instance, run.seed
    );
    let _ = writeln!(
        md,
        "- when: {}",
        run.when.as_deref().unwrap_or("not stated")
    );
    for (name, labels) in inputs.labels() {
        let shown = if labels.is_empty() {
            "not run".to_string()
        } else {
            labels.join(", ")
        };
        let _ = writeln!(md, "- input {name}: {shown}");
    }
    md.push_str("\n## Base models: final test accuracy\n\n| variant | thesis | pipe |\n| --- | --- | --- |\n");
    for variant in Variant::ALL {
        let thesis_table = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let theirs = numbers(&thesis_table, "test_acc").and_then(|v| v.last().copied());
        let ours = for_variant(&inputs.base, variant)
            .first()
            .and_then(|(_, t)| numbers(t, "test_acc"))
            .and_then(|v| v.last().copied());
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            variant.title(),
            fmt(theirs, 4),
            fmt(ours, 4)
        );
    }
    md.push_str("\n## Table 6.5: R² (thesis | pipe split | pipe CV)\n\n| variant | model | thesis | pipe | pipe CV |\n| --- | --- | --- | --- | --- |\n");
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
            let _ = writeln!(
                md,
                "| {} | {model} | {} | {} | {} ± {} |",
                variant.title(),
                fmt(theirs.map(|t| t[i]), 5),
                fmt(our.and_then(|o| o[0]), 5),
                fmt(our.and_then(|o| o[1]), 4),
                fmt(our.and_then(|o| o[2]), 4)
            );
        }
    }
    md.push_str("\n## Strongest correlations with accuracy (pipe | thesis data)\n\n");
    for variant in Variant::ALL {
        let theirs = thesis_correlations(variant);
        match our_correlations(inputs, variant) {
            Some(ours) => {
                let mut ranked: Vec<(&String, f64)> = ours.iter().map(|(k, v)| (k, v.0)).collect();
                ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
                let top: Vec<String> = ranked
                    .iter()
                    .take(3)
                    .map(|(p, r)| format!("{p} {r:.2} | {}", fmt(theirs.get(*p).copied(), 2)))
                    .collect();
                let _ = writeln!(md, "- {}: {}", variant.title(), top.join("; "));
            }
            None => {
                let _ = writeln!(md, "- {}: not run", variant.title());
            }
        }
    }
    md
}
