//! The random-network section: accuracy of the randomly structured networks by family.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::common::{accuracy_by_family, card, fmt, for_variant, mean, not_run};
use crate::report::svg::{self, PALETTE};
use crate::report::thesis;
use crate::report::{Html, ReportInputs, Variant, VariantText};

pub(in crate::report) fn random_section(html: &mut Html, inputs: &ReportInputs) {
    html.section(
        "random",
        "4. Randomly structured networks: Watts–Strogatz vs Barabási–Albert",
    );
    let have_ours = !inputs.random.is_empty() || !inputs.networks.is_empty();
    if !have_ours {
        html.missing.push("random networks".into());
        html.body.push_str(&not_run(
            "random networks (rnn.train_random results or a network table)",
        ));
    }
    let mut table = String::from("<table><tr><th>variant</th><th>thesis mean acc</th><th>thesis BA</th><th>thesis WS</th><th>pipe mean acc</th><th>pipe BA</th><th>pipe WS</th></tr>");
    html.body.push_str(r#"<p class="note">Test accuracy of the random networks per graph family: box = quartiles, whiskers = min/max, diamond = mean.</p><div class="grid">"#);
    for variant in Variant::ALL {
        let theirs = accuracy_by_family(&thesis::structure_table(variant));
        let ours_source = for_variant(&inputs.random, variant)
            .into_iter()
            .chain(for_variant(&inputs.networks, variant))
            .map(|(_, t)| accuracy_by_family(t))
            .find(|m| !m.is_empty())
            .unwrap_or_default();
        let groups: Vec<(String, String, Vec<f64>)> = vec![
            (
                "thesis BA".into(),
                "#888888".into(),
                theirs.get("BA").cloned().unwrap_or_default(),
            ),
            (
                "thesis WS".into(),
                "#444444".into(),
                theirs.get("WS").cloned().unwrap_or_default(),
            ),
            (
                "pipe BA".into(),
                PALETTE[0].into(),
                ours_source.get("BA").cloned().unwrap_or_default(),
            ),
            (
                "pipe WS".into(),
                PALETTE[1].into(),
                ours_source.get("WS").cloned().unwrap_or_default(),
            ),
        ];
        card(
            &mut html.body,
            &svg::box_chart(
                &format!("{}: WS vs BA", variant.title()),
                "test accuracy",
                &groups,
                360.0,
                260.0,
            ),
        );
        let all =
            |m: &BTreeMap<&str, Vec<f64>>| m.values().flatten().copied().collect::<Vec<f64>>();
        let family_mean = |m: &BTreeMap<&str, Vec<f64>>, f: &str| m.get(f).and_then(|v| mean(v));
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            variant.title(),
            fmt(mean(&all(&theirs)), 4),
            fmt(family_mean(&theirs, "BA"), 4),
            fmt(family_mean(&theirs, "WS"), 4),
            fmt(mean(&all(&ours_source)), 4),
            fmt(family_mean(&ours_source, "BA"), 4),
            fmt(family_mean(&ours_source, "WS"), 4)
        );
    }
    html.body.push_str("</div><h3>Mean test accuracy</h3>");
    table.push_str("</table>");
    html.body.push_str(&table);
}
