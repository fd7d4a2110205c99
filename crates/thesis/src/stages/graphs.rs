//! `graph.random` (Barabási–Albert and Watts–Strogatz graphs, `graphs.json`) and
//! `graph.properties` (the thesis's 23 properties per graph, `properties.csv`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::graph::{self, GenerationConfig, PROPERTY_NAMES};
use pipe_engine::stage::{InputDecl, InputSpec, OutputDecl, Plugin, StageContext, StageError};

pub struct RandomGraphs;

impl Plugin for RandomGraphs {
    type Params = GenerationConfig;
    const KIND: &'static str = "graph.random";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Random Barabási–Albert and connected Watts–Strogatz graphs (thesis §4)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(Vec::new())
    }

    fn outputs(&self, _: &GenerationConfig) -> Vec<OutputDecl> {
        vec![OutputDecl::new("graphs", "graphs.json")]
    }

    fn run(&self, params: GenerationConfig, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let graphs =
            graph::generate_graph_set_seeded(&params, ctx.seed).map_err(StageError::failed)?;
        let json = serde_json::to_vec_pretty(&graphs).map_err(StageError::failed)?;
        std::fs::write(ctx.output("graphs.json"), json)
            .map_err(|e| StageError::io("cannot write graphs.json", e))?;
        ctx.set_metrics(serde_json::json!({ "graphs": graphs.len() }));
        Ok(())
    }
}

pub struct GraphProperties;

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Plugin for GraphProperties {
    type Params = NoParams;
    const KIND: &'static str = "graph.properties";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "The 23 graph properties of the thesis for every graph (id, family, properties)";

    fn inputs(&self) -> InputSpec {
        InputSpec::Named(vec![InputDecl {
            name: "graphs",
            fan_in: false,
            required: true,
            about: "graphs.json from graph.random",
        }])
    }

    fn outputs(&self, _: &NoParams) -> Vec<OutputDecl> {
        vec![OutputDecl::new("properties", "properties.csv")]
    }

    fn run(&self, _: NoParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
        let graphs = crate::graph::read_graphs(ctx.input("graphs")?).map_err(StageError::failed)?;
        let properties = graph::properties_many(&graphs);
        let path = ctx.output("properties.csv");
        let mut writer = csv::Writer::from_path(&path).map_err(StageError::failed)?;
        let mut header = vec!["id".to_string(), "family".to_string()];
        header.extend(PROPERTY_NAMES.iter().map(|s| s.to_string()));
        writer.write_record(&header).map_err(StageError::failed)?;
        for (g, props) in graphs.iter().zip(properties) {
            let props = props.map_err(StageError::failed)?;
            let mut row = vec![g.id.to_string(), g.family.name().to_string()];
            row.extend(props.to_array().iter().map(|v| format_number(*v)));
            writer.write_record(&row).map_err(StageError::failed)?;
        }
        writer
            .flush()
            .map_err(|e| StageError::io("cannot write properties.csv", e))?;
        Ok(())
    }
}

/// Integers without a decimal point, floats in shortest round-trip form (like Python's repr).
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
