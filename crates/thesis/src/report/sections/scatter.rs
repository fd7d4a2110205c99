//! The scatter section: accuracy against each graph property.

use std::fmt::Write as _;

use ndarray::Array1;

use crate::analysis::{Table, TARGET};
use crate::report::common::{card, fmt, for_variant, not_run, numbers, xy};
use crate::report::svg::{self, PointGroup, PALETTE, THESIS_COLOUR};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};
use crate::stats::pearson;

pub(in crate::report) fn scatter_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("scatter", "5. Property vs accuracy");
    if inputs.networks.is_empty() {
        html.missing.push("per-network property tables".into());
        html.body.push_str(&not_run(
            "per-network property tables (analysis.join or data.table)",
        ));
    }
    html.body.push_str(r#"<p class="note">The properties of Tables 6.1–6.4. Hollow grey: thesis networks; filled blue: pipe networks. Titles give r (thesis data | pipe).</p>"#);
    for variant in Variant::ALL {
        let thesis_table = thesis::structure_table(variant);
        let ours = for_variant(&inputs.networks, variant)
            .first()
            .map(|(_, t)| t.clone());
        let _ = write!(
            html.body,
            "<h3>{}</h3><div class=\"grid\">",
            variant.title()
        );
        for (property, _) in thesis::printed_pearson(variant) {
            let r_of = |t: &Table| -> Option<f64> {
                let x = Array1::from(numbers(t, &property)?);
                let y = Array1::from(numbers(t, TARGET)?);
                pearson(x.view(), y.view()).ok().map(|c| c.r)
            };
            let mut groups = vec![PointGroup {
                label: "thesis".into(),
                points: xy(&thesis_table, &property, TARGET),
                colour: THESIS_COLOUR.into(),
                hollow: true,
            }];
            if let Some(table) = &ours {
                groups.push(PointGroup {
                    label: "pipe".into(),
                    points: xy(table, &property, TARGET),
                    colour: PALETTE[0].into(),
                    hollow: false,
                });
            }
            let title = format!(
                "{property} (r {} | {})",
                fmt(r_of(&thesis_table), 2),
                fmt(ours.as_ref().and_then(r_of), 2)
            );
            card(
                &mut html.body,
                &svg::scatter_chart(&title, &property, "test accuracy", &groups, 300.0, 220.0),
            );
        }
        html.body.push_str("</div>");
    }
}
