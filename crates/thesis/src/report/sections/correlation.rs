//! The correlation section: Pearson correlations of the properties with accuracy.

use crate::analysis::{self};
use crate::report::common::{card, not_run, our_correlations, thesis_correlations};
use crate::report::svg::{self, PALETTE, THESIS_COLOUR};
use crate::report::{Html, ReportInputs, Variant, VariantText};

pub(in crate::report) fn correlation_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "correlations",
        "6. Correlation of each property with accuracy",
    );
    if inputs.correlations.is_empty() {
        html.missing.push("correlations".into());
        html.body
            .push_str(&not_run("correlations (analysis.correlate)"));
    }
    html.body.push_str(r#"<p class="note">Pearson r with test accuracy, all 23 properties: grey = thesis (recomputed from its <code>results/structure</code> table), blue = pipe.</p><div class="grid">"#);
    let properties = analysis::all_properties();
    for variant in Variant::ALL {
        let theirs = thesis_correlations(variant);
        let ours = our_correlations(inputs, variant);
        let mut groups = vec![(
            "thesis".to_string(),
            THESIS_COLOUR.to_string(),
            properties.iter().map(|p| theirs.get(p).copied()).collect(),
        )];
        if let Some(ours) = &ours {
            groups.push((
                "pipe".to_string(),
                PALETTE[0].to_string(),
                properties
                    .iter()
                    .map(|p| ours.get(p).map(|v| v.0))
                    .collect(),
            ));
        }
        card(
            &mut html.body,
            &svg::bar_chart(
                &format!("{}: Pearson r with test accuracy", variant.title()),
                &properties,
                &groups,
                (-1.0, 1.0),
                430.0,
            ),
        );
    }
    html.body.push_str("</div>");
}
