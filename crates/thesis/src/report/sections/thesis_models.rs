//! The headline pruning comparison: per variant, mode and level, the accuracy right after
//! pruning, the best accuracy during retraining and the epochs to regain, from this run next to
//! the thesis's own CSVs, and the safe-level table from both under one rule. Made for
//! `pipelines/thesis-weights.yaml`, where both prune the same (the thesis's) models, so every
//! difference is the pruning's, not the training's.

use std::fmt::Write as _;

use crate::model::within_tolerance;
use crate::report::common::{
    fmt, for_variant, numbers, our_prune_rows, rows_where, thesis_prune_rows,
};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText, PRUNE_MODES};

/// Points a pruned model may lose and still count as regained or safe (rnn.prune's default).
const TOLERANCE_POINTS: f64 = 1.0;

/// Accuracies are counts over the 6,250 test strings: 5 decimals show them exactly.
const DECIMALS: usize = 5;

/// One level of one sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LevelRow {
    level: f64,
    after: Option<f64>,
    best_retrained: Option<f64>,
    /// First epoch (0 = right after pruning) within tolerance of the unpruned accuracy.
    regain: Option<f64>,
}

/// Per level, from (level, epoch, accuracy) rows.
fn level_rows(rows: &[(f64, f64, f64)], unpruned: Option<f64>) -> Vec<LevelRow> {
    let mut levels: Vec<f64> = rows.iter().map(|r| r.0).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    levels
        .into_iter()
        .map(|level| {
            let mut epochs: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.0 == level)
                .map(|r| (r.1, r.2))
                .collect();
            epochs.sort_by(|a, b| a.0.total_cmp(&b.0));
            LevelRow {
                level,
                after: epochs.iter().find(|e| e.0 == 0.0).map(|e| e.1),
                best_retrained: epochs
                    .iter()
                    .filter(|e| e.0 > 0.0)
                    .map(|e| e.1)
                    .reduce(f64::max),
                regain: unpruned.and_then(|u| {
                    epochs
                        .iter()
                        .find(|e| within_tolerance(e.1, u, TOLERANCE_POINTS))
                        .map(|e| e.0)
                }),
            }
        })
        .collect()
}

/// The highest level whose accuracy right after pruning is within tolerance.
fn safe(rows: &[LevelRow], unpruned: Option<f64>) -> Option<f64> {
    let unpruned = unpruned?;
    rows.iter()
        .filter(|r| {
            r.after
                .is_some_and(|a| within_tolerance(a, unpruned, TOLERANCE_POINTS))
        })
        .map(|r| r.level)
        .reduce(f64::max)
}

fn thesis_unpruned(variant: Variant) -> Option<f64> {
    let base = rows_where(&thesis::prune_table(variant), "mode", variant.name());
    numbers(&base, "test_acc")?.last().copied()
}

/// This run's unpruned accuracy: `rnn.prune`'s `safe.json` (the model it pruned, evaluated as
/// it evaluates), else the base training's last epoch.
fn our_unpruned(inputs: &ReportInputs, variant: Variant) -> Option<f64> {
    inputs
        .prune_safe
        .iter()
        .find(|(label, _)| crate::report::variant_from_label(label) == Some(variant))
        .map(|(_, s)| s.unpruned_test_acc)
        .or_else(|| {
            for_variant(&inputs.base, variant)
                .first()
                .and_then(|(_, t)| numbers(t, "test_acc")?.last().copied())
        })
}

fn level_text(level: Option<f64>) -> String {
    level.map_or("none".into(), |l| format!("{l}"))
}

/// `a` and `b` equal when both are shown with `DECIMALS` decimals.
fn same_shown(a: f64, b: f64) -> bool {
    format!("{a:.DECIMALS$}") == format!("{b:.DECIMALS$}")
}

pub(in crate::report) fn thesis_models_section(html: &mut Html, inputs: &ReportInputs) {
    if inputs.prune.is_empty() {
        return;
    }
    html.section(
        "headline",
        "Pruning level by level, next to the thesis's own results",
    );
    html.body.push_str(&format!(
        r#"<p class="note">For each variant, mode and level: the test accuracy right after pruning (epoch 0), the best test accuracy during retraining (epochs 1…) and the first epoch whose accuracy is within {TOLERANCE_POINTS} point of the unpruned model's (0: never lost it), from this run and from the thesis's CSVs (<code>results/prune</code>). Accuracies to {DECIMALS} decimals, which show every count over the 6,250 test strings exactly; Δ = pipe − thesis. When this run pruned the thesis's own models (<code>pipelines/thesis-weights.yaml</code>), the accuracy right after pruning depends only on the pruning and the evaluation, not on any training: differences there come from the evaluation order (the thesis evaluated a shuffled test loader with the last-padded readout, so which strings share a batch, and with it each batch's padded length, changed between runs; <code>pipe</code> evaluates in file order), which matters only once pruning has made the network sensitive to the padding. Retraining differs anyway: its batches are shuffled by a different generator.</p>"#
    ));
    // Headline counts and the safe-level table first.
    let mut agree_low = (0, 0);
    let mut agree_high = (0, 0);
    let mut largest_high: f64 = 0.0;
    let mut tables = String::new();
    let mut safe_rows = String::new();
    for variant in Variant::ALL {
        let curves = for_variant(&inputs.prune, variant);
        let ours_unpruned = our_unpruned(inputs, variant);
        let theirs_unpruned = thesis_unpruned(variant);
        let stated = thesis::safe_prune_percent(variant);
        let _ = write!(
            tables,
            "<h3>{}: unpruned test accuracy thesis {}, pipe {}</h3><table><tr><th>mode</th><th>p %</th><th>after pruning: thesis</th><th>pipe</th><th>Δ</th><th>best retrained: thesis</th><th>pipe</th><th>epochs to regain: thesis</th><th>pipe</th></tr>",
            variant.title(),
            fmt(theirs_unpruned, DECIMALS),
            fmt(ours_unpruned, DECIMALS)
        );
        for ((mode, suffix, title), stated) in PRUNE_MODES.iter().zip(stated) {
            let ours = level_rows(&our_prune_rows(&curves, mode), ours_unpruned);
            let theirs = level_rows(&thesis_prune_rows(variant, suffix), theirs_unpruned);
            if ours.is_empty() {
                continue;
            }
            let _ = write!(
                safe_rows,
                "<tr><td>{}</td><td>{title}</td><td>{stated}</td><td>{}</td><td>{}</td></tr>",
                variant.title(),
                level_text(safe(&theirs, theirs_unpruned)),
                level_text(safe(&ours, ours_unpruned)),
            );
            for row in &ours {
                let thesis_row = theirs.iter().find(|t| t.level == row.level);
                let thesis_after = thesis_row.and_then(|t| t.after);
                let delta = row.after.zip(thesis_after).map(|(a, b)| a - b);
                if let (Some(a), Some(b)) = (row.after, thesis_after) {
                    let counter = if row.level <= 50.0 {
                        &mut agree_low
                    } else {
                        largest_high = largest_high.max((a - b).abs());
                        &mut agree_high
                    };
                    counter.1 += 1;
                    counter.0 += usize::from(same_shown(a, b));
                }
                let delta_text = match delta {
                    Some(d) if same_shown(d.abs(), 0.0) => "=".to_string(),
                    Some(d) => format!("{d:+.DECIMALS$}"),
                    None => "—".into(),
                };
                let epochs = |v: Option<f64>| v.map_or("never".into(), |e| format!("{e}"));
                let _ = write!(
                    tables,
                    "<tr><td>{title}</td><td>{}</td><td>{}</td><td>{}</td><td>{delta_text}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    row.level,
                    fmt(thesis_after, DECIMALS),
                    fmt(row.after, DECIMALS),
                    fmt(thesis_row.and_then(|t| t.best_retrained), DECIMALS),
                    fmt(row.best_retrained, DECIMALS),
                    thesis_row.map_or("—".into(), |t| epochs(t.regain)),
                    if row.best_retrained.is_none() && row.regain.is_none() {
                        "not retrained".into()
                    } else {
                        epochs(row.regain)
                    },
                );
            }
        }
        tables.push_str("</table>");
    }
    let _ = write!(
        html.body,
        "<p><strong>Accuracy right after pruning, equal to the thesis's at {DECIMALS} decimals:</strong> {} of {} cells at 10–50 %, {} of {} at 60–100 % (largest difference there {:.DECIMALS$}).</p>",
        agree_low.0, agree_low.1, agree_high.0, agree_high.1, largest_high
    );
    let _ = write!(
        html.body,
        "<h3>Highest safe pruning percentage</h3><p class=\"note\">The highest level whose accuracy right after pruning is within {TOLERANCE_POINTS} point of the unpruned model's, from this run and from the thesis's data under the same rule; \"stated\" is the thesis text's level.</p><table><tr><th>variant</th><th>mode</th><th>thesis, stated</th><th>thesis data</th><th>pipe</th></tr>{safe_rows}</table>"
    );
    html.body.push_str(&tables);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rows_find_best_and_regain() {
        let rows = [
            (10.0, 0.0, 0.995),
            (90.0, 2.0, 0.97),
            (90.0, 0.0, 0.5),
            (90.0, 1.0, 0.992),
        ];
        let out = level_rows(&rows, Some(1.0));
        assert_eq!(
            out,
            vec![
                LevelRow {
                    level: 10.0,
                    after: Some(0.995),
                    best_retrained: None,
                    regain: Some(0.0)
                },
                LevelRow {
                    level: 90.0,
                    after: Some(0.5),
                    best_retrained: Some(0.992),
                    regain: Some(1.0)
                },
            ]
        );
        assert_eq!(safe(&out, Some(1.0)), Some(10.0));
        assert_eq!(safe(&out, None), None);
        assert!(same_shown(0.937280001, 0.93728));
        assert!(!same_shown(0.93312, 0.93296));
    }
}
