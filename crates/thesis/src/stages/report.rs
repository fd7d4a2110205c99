//! `report`: one self-contained `report.html` (inline SVG, no scripts or network) and a
//! `summary.md` from whatever upstream results are wired in. Every input is an optional fan-in
//! keyed by variant labels (`lstm`, `lstm-both`, ...); missing ones leave their sections saying
//! "not run". The thesis's numbers come compiled in (see `report::thesis`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::Table;
use crate::report::{self, ReportInputs, RunInfo};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

pub struct Report;

/// What the report says about the run; nothing here is read from the clock.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReportParams {
    /// Heading of the report.
    pub title: String,
    /// When the run happened, as text (e.g. a date); shown as given.
    pub when: Option<String>,
    /// What this run is for, shown under the heading.
    pub description: Option<String>,
    /// Fill "Stage timings" from the records of every instance upstream (the engine hands them
    /// in as the `timings` input). The report's bytes then depend on measured times.
    pub stage_timings: bool,
}

impl Default for ReportParams {
    fn default() -> Self {
        ReportParams {
            title: "pipe: sparse recurrent networks, thesis reproduction".to_string(),
            when: None,
            description: None,
            stage_timings: false,
        }
    }
}

const FAN_INS: [(&str, &str); 8] = [
    ("base", "metrics.csv of rnn.train, labelled by variant"),
    (
        "prune",
        "curves.csv of rnn.prune, labelled variant[-weights]",
    ),
    ("prune_summary", "summary.csv of rnn.prune"),
    (
        "random",
        "results.csv of rnn.train_random (id,family,test_acc,...)",
    ),
    (
        "networks",
        "per-network tables: 23 properties + test_acc (analysis.join / data.table)",
    ),
    ("correlations", "correlations.csv of analysis.correlate"),
    ("r2", "r2.csv of analysis.regress"),
    ("subsets", "subsets.csv of analysis.regress"),
];

fn read_fan_in(ctx: &StageContext<'_>, name: &str) -> Result<Vec<(String, Table)>, StageError> {
    if !ctx.inputs.contains_key(name) {
        return Ok(Vec::new());
    }
    ctx.fan_in(name)?
        .into_iter()
        .map(|(label, path)| {
            let table = Table::read(&path).map_err(StageError::failed)?;
            Ok((label, table))
        })
        .collect()
}

fn read_safe(ctx: &StageContext<'_>) -> Result<Vec<(String, report::PruneSafe)>, StageError> {
    if !ctx.inputs.contains_key("prune_safe") {
        return Ok(Vec::new());
    }
    ctx.fan_in("prune_safe")?
        .into_iter()
        .map(|(label, path)| {
            let bytes =
                std::fs::read(&path).map_err(|e| StageError::io(path.display().to_string(), e))?;
            let safe = serde_json::from_slice(&bytes)
                .map_err(|e| StageError::Failed(format!("{}: {e}", path.display())))?;
            Ok((label, safe))
        })
        .collect()
}

impl Plugin for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    // 3: the thesis-weights comparison (prune_safe input); 4: the `stage_timings` parameter.
    const VERSION: u32 = 4;
    /// The report prints its instance name.
    const OBSERVES_INSTANCE: bool = true;
    const ABOUT: &'static str =
        "Self-contained HTML report (inline SVG) and summary.md, thesis numbers beside ours";

    fn inputs(&self) -> InputSpec {
        let mut inputs: Vec<InputDecl> = FAN_INS
            .iter()
            .map(|&(name, about)| InputDecl {
                name,
                fan_in: true,
                required: false,
                about,
            })
            .collect();
        inputs.push(InputDecl {
            name: "prune_safe",
            fan_in: true,
            required: false,
            about: "safe.json of rnn.prune (the unpruned accuracy it measured)",
        });
        inputs.push(InputDecl {
            name: "timings",
            fan_in: false,
            required: false,
            about: "optional table of per-stage timings, shown as given",
        });
        InputSpec::Named(inputs)
    }

    fn timings(&self, params: &ReportParams) -> bool {
        params.stage_timings
    }

    fn outputs(&self, _: &ReportParams) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("html", "report.html"),
            OutputDecl::new("summary", "summary.md"),
        ]
    }

    fn run(&self, params: ReportParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let timings = if ctx.inputs.contains_key("timings") {
            Some(Table::read(ctx.input("timings")?).map_err(StageError::failed)?)
        } else {
            None
        };
        let inputs = ReportInputs {
            base: read_fan_in(ctx, "base")?,
            prune: read_fan_in(ctx, "prune")?,
            prune_summary: read_fan_in(ctx, "prune_summary")?,
            random: read_fan_in(ctx, "random")?,
            networks: read_fan_in(ctx, "networks")?,
            correlations: read_fan_in(ctx, "correlations")?,
            r2: read_fan_in(ctx, "r2")?,
            subsets: read_fan_in(ctx, "subsets")?,
            prune_safe: read_safe(ctx)?,
            timings,
        };
        let run = RunInfo {
            title: params.title.clone(),
            instance: ctx.instance.clone(),
            seed: ctx.seed,
            when: params.when.clone(),
            description: params.description.clone(),
            params: ctx.params.clone(),
        };
        ctx.progress("rendering report.html");
        let html = report::render_html(&inputs, &run);
        std::fs::write(ctx.output("report.html"), &html)
            .map_err(|e| StageError::io("cannot write report.html", e))?;
        std::fs::write(
            ctx.output("summary.md"),
            report::render_summary(&inputs, &run),
        )
        .map_err(|e| StageError::io("cannot write summary.md", e))?;
        ctx.set_metrics(serde_json::json!({
            "bytes": html.len(),
            "svg": html.matches("<svg").count(),
        }));
        Ok(())
    }
}
