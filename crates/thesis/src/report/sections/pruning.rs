//! The pruning section: accuracy right after pruning by level, and the safe level rule.

use std::fmt::Write as _;

use crate::analysis::Table;
use crate::report::common::{
    card, for_variant, html_table, not_run, numbers, our_prune_rows, rows_where, thesis_prune_rows,
};
use crate::report::svg::{escape, LineChart, Series, PALETTE};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText, PRUNE_MODES};

/// (level, accuracy right after pruning) from (level, epoch, accuracy) rows, by level.
fn epoch_zero(rows: Vec<(f64, f64, f64)>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = rows
        .into_iter()
        .filter(|r| r.1 == 0.0)
        .map(|r| (r.0, r.2))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The rule `rnn.prune` writes into `safe.json`, with its default tolerance: the highest level
/// whose accuracy right after pruning is within one point of the unpruned model's.
const SAFE_TOLERANCE_POINTS: f64 = 1.0;

fn safe_level(after_pruning: &[(f64, f64)], unpruned: Option<f64>) -> Option<f64> {
    let unpruned = unpruned?;
    after_pruning
        .iter()
        .filter(|(_, acc)| crate::model::within_tolerance(*acc, unpruned, SAFE_TOLERANCE_POINTS))
        .map(|(level, _)| *level)
        .reduce(f64::max)
}

fn last_value(table: &Table, column: &str) -> Option<f64> {
    numbers(table, column)?.last().copied()
}

pub(in crate::report) fn pruning_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("pruning", "2. Accuracy right after pruning vs p");
    if inputs.prune.is_empty() {
        html.missing.push("pruning".into());
        html.body.push_str(&not_run("pruning (rnn.prune curves)"));
    }
    html.body.push_str(r#"<p class="note">Epoch 0 of each pruning run: test accuracy right after magnitude pruning, before retraining. Solid: pipe; dashed: thesis, same colour per mode.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let curves = for_variant(&inputs.prune, variant);
        let mut series = Vec::new();
        for (i, (mode, suffix, title)) in PRUNE_MODES.iter().enumerate() {
            let ours = epoch_zero(our_prune_rows(&curves, mode));
            if !ours.is_empty() {
                series.push(Series {
                    label: format!("pipe {title}"),
                    points: ours,
                    colour: PALETTE[i].into(),
                    dashed: false,
                });
            }
            series.push(Series {
                label: format!("thesis {title}"),
                points: epoch_zero(thesis_prune_rows(variant, suffix)),
                colour: PALETTE[i].into(),
                dashed: true,
            });
        }
        let chart = LineChart {
            title: &format!("{}: accuracy after pruning", variant.title()),
            x_label: "pruned %",
            y_label: "test accuracy",
            series: &series,
            y_fixed: Some((0.0, 1.0)),
            width: 420.0,
            height: 280.0,
            integer_x: false,
            show_legend: true,
        }
        .render();
        card(&mut html.body, &chart);
    }
    html.body.push_str("</div>");
    html.body.push_str(r#"<h3>Highest safe pruning percentage (thesis ch. 7.2)</h3><p class="note">Safe: the highest level whose test accuracy right after pruning is within 1 point of the unpruned model's final test accuracy. "thesis, stated": the levels the thesis's text gives; "thesis data": the same rule applied to the thesis's own raw results; "pipe": this run.</p><table><tr><th>variant</th><th>mode</th><th>thesis, stated</th><th>thesis data, same rule</th><th>pipe</th></tr>"#);
    for variant in Variant::ALL {
        let stated = thesis::safe_prune_percent(variant);
        let thesis_base = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let thesis_unpruned = last_value(&thesis_base, "test_acc");
        // Without base training (imported models), the unpruned accuracy rnn.prune measured.
        let our_unpruned = for_variant(&inputs.base, variant)
            .first()
            .and_then(|(_, table)| last_value(table, "test_acc"))
            .or_else(|| {
                inputs
                    .prune_safe
                    .iter()
                    .find(|(label, _)| crate::report::variant_from_label(label) == Some(variant))
                    .map(|(_, s)| s.unpruned_test_acc)
            });
        let curves = for_variant(&inputs.prune, variant);
        for ((mode, suffix, title), stated) in PRUNE_MODES.iter().zip(stated) {
            let theirs = safe_level(
                &epoch_zero(thesis_prune_rows(variant, suffix)),
                thesis_unpruned,
            );
            let ours = epoch_zero(our_prune_rows(&curves, mode));
            let ours = if ours.is_empty() {
                "not run".to_string()
            } else {
                safe_level(&ours, our_unpruned).map_or("none".into(), |l| format!("{l}"))
            };
            let _ = write!(
                html.body,
                "<tr><td>{}</td><td>{title}</td><td>{stated}</td><td>{}</td><td>{ours}</td></tr>",
                variant.title(),
                theirs.map_or("none".into(), |l| format!("{l}"))
            );
        }
    }
    html.body.push_str("</table>");
    for (label, table) in &inputs.prune_summary {
        let _ = write!(
            html.body,
            "<h3>pipe pruning summary: {}</h3>",
            escape(label)
        );
        html.body.push_str(&html_table(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-point rule on the thesis's own raw results (checked by hand from the CSVs): looser
    /// stated levels show up as differences in 4 of 12 places.
    #[test]
    fn safe_levels_of_the_thesis_data_under_the_one_point_rule() {
        let expected = [
            (Variant::RnnTanh, [70.0, 70.0, 80.0]),
            (Variant::RnnRelu, [60.0, 70.0, 70.0]),
            (Variant::Lstm, [60.0, 70.0, 80.0]),
            (Variant::Gru, [80.0, 80.0, 70.0]),
        ];
        for (variant, levels) in expected {
            let base = rows_where(&thesis::prune_table(variant), "mode", variant.name());
            let unpruned = last_value(&base, "test_acc");
            for ((_, suffix, title), level) in PRUNE_MODES.iter().zip(levels) {
                let after = epoch_zero(thesis_prune_rows(variant, suffix));
                assert_eq!(
                    safe_level(&after, unpruned),
                    Some(level),
                    "{variant} {title}"
                );
            }
        }
        assert_eq!(safe_level(&[(10.0, 0.5)], Some(1.0)), None);
        assert_eq!(safe_level(&[(10.0, 0.995)], None), None);
    }
}
