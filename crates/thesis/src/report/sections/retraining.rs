//! The retraining section: accuracy of pruned models after retraining.

use std::fmt::Write as _;

use crate::report::common::{card, for_variant, not_run, our_prune_rows, thesis_prune_rows};
use crate::report::svg::{LineChart, Series, PALETTE};
use crate::report::{Html, ReportInputs, Variant, VariantText, PRUNE_MODES};

pub(in crate::report) fn retraining_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("retraining", "3. Accuracy during retraining, per p");
    if inputs.prune.is_empty() {
        html.body
            .push_str(&not_run("pruning and retraining (rnn.prune curves)"));
    }
    html.body.push_str(r#"<p class="note">Test accuracy per retraining epoch (0 = right after pruning); one colour per pruning percentage, solid pipe, dashed thesis.</p><p class="key">"#);
    for (i, colour) in PALETTE.iter().enumerate() {
        let _ = write!(
            html.body,
            r#"<span style="background:{colour}"></span>{}%"#,
            (i + 1) * 10
        );
    }
    html.body.push_str("</p>");
    for variant in Variant::ALL {
        let curves = for_variant(&inputs.prune, variant);
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        for (mode, suffix, title) in PRUNE_MODES {
            let ours = our_prune_rows(&curves, mode);
            let theirs = thesis_prune_rows(variant, suffix);
            let mut series = Vec::new();
            for (i, colour) in PALETTE.iter().enumerate() {
                let p = ((i + 1) * 10) as f64;
                let line = |rows: &[(f64, f64, f64)]| -> Vec<(f64, f64)> {
                    let mut points: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(|r| (r.0 - p).abs() < 1e-6)
                        .map(|r| (r.1, r.2))
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    points
                };
                let our_line = line(ours.as_slice());
                if !our_line.is_empty() {
                    series.push(Series {
                        label: format!("pipe {p}%"),
                        points: our_line,
                        colour: colour.to_string(),
                        dashed: false,
                    });
                }
                series.push(Series {
                    label: format!("thesis {p}%"),
                    points: line(theirs.as_slice()),
                    colour: colour.to_string(),
                    dashed: true,
                });
            }
            let chart = LineChart {
                title: &format!("{} {title}: retraining", variant.title()),
                x_label: "retraining epoch",
                y_label: "test accuracy",
                series: &series,
                y_fixed: Some((0.0, 1.0)),
                width: 360.0,
                height: 250.0,
                integer_x: true,
                show_legend: false,
            }
            .render();
            card(&mut html.body, &chart);
        }
        html.body.push_str("</div>");
    }
}
