//! The seed-spread section: when a pipeline repeats runs over seeds (`pipelines/seeds.yaml`),
//! mean ± standard deviation over the seeds of the base models' final accuracy, the safe pruning
//! level and the random networks' mean accuracy, next to the thesis's single run, so a reader can
//! tell whether a difference from the thesis is noise.

use std::fmt::Write as _;

use crate::report::common::{fmt, for_variant, mean, numbers, rows_where};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};

/// Mean and sample standard deviation (n − 1); `None` for fewer than two values' spread.
fn mean_std(values: &[f64]) -> Option<(f64, Option<f64>)> {
    let m = mean(values)?;
    let spread = (values.len() > 1).then(|| {
        let sum: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
        (sum / (values.len() - 1) as f64).sqrt()
    });
    Some((m, spread))
}

fn spread_text(values: &[f64], decimals: usize) -> String {
    match mean_std(values) {
        Some((m, Some(s))) => format!("{m:.decimals$} ± {s:.decimals$} (n = {})", values.len()),
        Some((m, None)) => format!("{m:.decimals$} (n = 1)"),
        None => "—".into(),
    }
}

fn last(table: &crate::analysis::Table, column: &str) -> Option<f64> {
    numbers(table, column)?.last().copied()
}

pub(in crate::report) fn seeds_section(html: &mut Html, inputs: &ReportInputs) {
    let repeated = Variant::ALL
        .iter()
        .any(|&v| for_variant(&inputs.base, v).len() > 1);
    if !repeated {
        return;
    }
    html.section("seeds", "Seed spread next to the thesis's single run");
    html.body.push_str(r#"<p class="note">Each value over this run's repeats of a variant (one per seed): mean ± sample standard deviation (n − 1). The thesis ran each experiment once. Safe level: the highest pruning level within 1 point of the unpruned accuracy, per seed.</p><table><tr><th>variant</th><th>base: final test accuracy</th><th>thesis</th><th>safe level (ih + hh) per seed</th><th>random networks: mean test accuracy</th><th>thesis</th></tr>"#);
    for variant in Variant::ALL {
        let base: Vec<f64> = for_variant(&inputs.base, variant)
            .iter()
            .filter_map(|(_, t)| last(t, "test_acc"))
            .collect();
        let thesis_base = last(
            &rows_where(&thesis::prune_table(variant), "mode", variant.name()),
            "test_acc",
        );
        let safe: Vec<String> = inputs
            .prune_safe
            .iter()
            .filter(|(label, _)| crate::report::variant_from_label(label) == Some(variant))
            .map(|(_, s)| s.safe_level.map_or("none".into(), |l| l.to_string()))
            .collect();
        let random: Vec<f64> = for_variant(&inputs.random, variant)
            .iter()
            .filter_map(|(_, t)| mean(&numbers(t, "test_acc")?))
            .collect();
        let thesis_random =
            numbers(&thesis::structure_table(variant), "test_acc").and_then(|v| mean(&v));
        let _ = write!(
            html.body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            variant.title(),
            spread_text(&base, 4),
            fmt(thesis_base, 4),
            if safe.is_empty() {
                "—".into()
            } else {
                safe.join(", ")
            },
            spread_text(&random, 4),
            fmt(thesis_random, 4),
        );
    }
    html.body.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_sample_standard_deviation() {
        assert_eq!(spread_text(&[0.9, 1.0], 4), "0.9500 ± 0.0707 (n = 2)");
        assert_eq!(spread_text(&[1.0], 4), "1.0000 (n = 1)");
        assert_eq!(spread_text(&[], 4), "—");
    }
}
