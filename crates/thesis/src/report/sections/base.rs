//! The base-experiment section: learning curves of the four cells beside the thesis's.

use std::fmt::Write as _;

use crate::report::common::{card, fmt, for_variant, not_run, numbers, rows_where, xy};
use crate::report::svg::{LineChart, Series, PALETTE, THESIS_COLOUR};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};

pub(in crate::report) fn base_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("base", "1. Base models: training curves");
    if inputs.base.is_empty() {
        html.missing.push("base training".into());
        html.body
            .push_str(&not_run("base training (rnn.train metrics)"));
    }
    html.body.push_str(r#"<p class="note">Solid: pipe; dashed grey: thesis (<code>results/prune/&lt;variant&gt;.csv</code>, mode = variant). The thesis's losses are sums over batches, so they are drawn in their own chart.</p>"#);
    let mut summary = String::from("<table><tr><th>variant</th><th>thesis final test acc</th><th>pipe final test acc</th><th>thesis best</th><th>pipe best</th></tr>");
    for variant in Variant::ALL {
        let thesis_table = rows_where(&thesis::prune_table(variant), "mode", variant.name());
        let ours = for_variant(&inputs.base, variant);
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        let mut series = Vec::new();
        if let Some((_, table)) = ours.first() {
            series.push(Series {
                label: "pipe train".into(),
                points: xy(table, "epoch", "train_acc"),
                colour: PALETTE[0].into(),
                dashed: false,
            });
            series.push(Series {
                label: "pipe test".into(),
                points: xy(table, "epoch", "test_acc"),
                colour: PALETTE[1].into(),
                dashed: false,
            });
        }
        series.push(Series {
            label: "thesis train".into(),
            points: xy(&thesis_table, "epoch", "train_acc"),
            colour: "#999999".into(),
            dashed: true,
        });
        series.push(Series {
            label: "thesis test".into(),
            points: xy(&thesis_table, "epoch", "test_acc"),
            colour: THESIS_COLOUR.into(),
            dashed: true,
        });
        let accuracy = LineChart {
            title: &format!("{} accuracy", variant.title()),
            x_label: "epoch",
            y_label: "accuracy",
            series: &series,
            y_fixed: None,
            width: 420.0,
            height: 260.0,
            integer_x: true,
            show_legend: true,
        }
        .render();
        card(&mut html.body, &accuracy);
        if let Some((_, table)) = ours.first() {
            let loss_series = [
                Series {
                    label: "pipe train".into(),
                    points: xy(table, "epoch", "train_loss"),
                    colour: PALETTE[0].into(),
                    dashed: false,
                },
                Series {
                    label: "pipe test".into(),
                    points: xy(table, "epoch", "test_loss"),
                    colour: PALETTE[1].into(),
                    dashed: false,
                },
            ];
            card(
                &mut html.body,
                &LineChart {
                    title: &format!("{} loss (pipe)", variant.title()),
                    x_label: "epoch",
                    y_label: "loss",
                    series: &loss_series,
                    y_fixed: None,
                    width: 360.0,
                    height: 260.0,
                    integer_x: true,
                    show_legend: true,
                }
                .render(),
            );
        } else {
            card(
                &mut html.body,
                &not_run(&format!("{} base training", variant.title())),
            );
        }
        let thesis_loss = [
            Series {
                label: "thesis train (sum)".into(),
                points: xy(&thesis_table, "epoch", "train_loss"),
                colour: "#999999".into(),
                dashed: true,
            },
            Series {
                label: "thesis test (sum)".into(),
                points: xy(&thesis_table, "epoch", "test_loss"),
                colour: THESIS_COLOUR.into(),
                dashed: true,
            },
        ];
        card(
            &mut html.body,
            &LineChart {
                title: &format!("{} loss (thesis)", variant.title()),
                x_label: "epoch",
                y_label: "loss (sum over batches)",
                series: &thesis_loss,
                y_fixed: None,
                width: 360.0,
                height: 260.0,
                integer_x: true,
                show_legend: true,
            }
            .render(),
        );
        html.body.push_str("</div>");
        let thesis_acc = numbers(&thesis_table, "test_acc").unwrap_or_default();
        let our_acc = ours
            .first()
            .and_then(|(_, t)| numbers(t, "test_acc"))
            .unwrap_or_default();
        let best = |v: &[f64]| v.iter().copied().reduce(f64::max);
        let _ = write!(
            summary,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            variant.title(),
            fmt(thesis_acc.last().copied(), 4),
            fmt(our_acc.last().copied(), 4),
            fmt(best(&thesis_acc), 4),
            fmt(best(&our_acc), 4)
        );
    }
    summary.push_str("</table>");
    html.body.push_str("<h3>Final test accuracy</h3>");
    html.body.push_str(&summary);
}
