//! The Pearson-tables section: our correlation table beside the thesis's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis;
use crate::report::common::{fmt, our_correlations, thesis_correlations};
use crate::report::svg::escape;
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};

pub(in crate::report) fn pearson_tables_section(html: &mut Html, inputs: &ReportInputs) {
    html.section("tables-6-1-4", "7. Tables 6.1–6.4 side by side");
    html.body.push_str(r#"<p class="note">Thesis (text) = the value printed in the thesis (2 decimals); thesis (data) = recomputed by pipe from the thesis's structure table; pipe = this run's <code>analysis.correlate</code>.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let printed: BTreeMap<String, f64> = thesis::printed_pearson(variant).into_iter().collect();
        let theirs = thesis_correlations(variant);
        let ours = our_correlations(inputs, variant);
        let mut table = format!(
            "<div class=\"card\"><strong>Table {} — {}</strong><table><tr><th>property</th><th>thesis (text)</th><th>thesis (data)</th><th>pipe r</th><th>pipe p</th></tr>",
            variant.pearson_table(),
            variant.title()
        );
        for property in analysis::all_properties() {
            let our = ours.as_ref().and_then(|m| m.get(&property).copied());
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&property),
                fmt(printed.get(&property).copied(), 2),
                fmt(theirs.get(&property).copied(), 3),
                if ours.is_some() {
                    fmt(our.map(|o| o.0), 3)
                } else {
                    "not run".into()
                },
                our.map(|o| o.1)
                    .filter(|p| p.is_finite())
                    .map(|p| format!("{p:.1e}"))
                    .unwrap_or_else(|| "—".into())
            );
        }
        table.push_str("</table></div>");
        html.body.push_str(&table);
    }
    html.body.push_str("</div>");
}
