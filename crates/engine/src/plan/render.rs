//! `pipe dag`: the instance graph as indented text, Graphviz dot or Mermaid.

use std::fmt::Write;

use super::{InputBinding, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

/// Renders the plan's DAG; edges are labelled with the input name (or `needs`).
pub fn render_dag(plan: &Plan, format: DagFormat) -> String {
    let mut out = String::new();
    let edges = edges(plan);
    match format {
        DagFormat::Text => {
            for &i in &plan.order {
                let instance = &plan.instances[i];
                let _ = writeln!(out, "{}  ({})", instance.name, instance.plugin.kind());
                for (from, to, label) in &edges {
                    if *to == i {
                        let _ = writeln!(out, "  ← {} as {label}", plan.instances[*from].name);
                    }
                }
            }
        }
        DagFormat::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
            for &i in &plan.order {
                let instance = &plan.instances[i];
                let _ = writeln!(
                    out,
                    "  \"{}\" [label=\"{}\\n{}\"];",
                    instance.name,
                    instance.name,
                    instance.plugin.kind()
                );
            }
            for (from, to, label) in &edges {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [label=\"{label}\"];",
                    plan.instances[*from].name, plan.instances[*to].name
                );
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for &i in &plan.order {
                let instance = &plan.instances[i];
                let _ = writeln!(
                    out,
                    "  n{i}[\"{}<br/>{}\"]",
                    instance.name,
                    instance.plugin.kind()
                );
            }
            for (from, to, label) in &edges {
                let _ = writeln!(out, "  n{from} -->|{label}| n{to}");
            }
        }
    }
    out
}

fn edges(plan: &Plan) -> Vec<(usize, usize, String)> {
    let mut edges = Vec::new();
    for instance in &plan.instances {
        let mut via_input = Vec::new();
        for (name, binding) in &instance.inputs {
            match binding {
                InputBinding::One { instance: up, .. } => {
                    edges.push((*up, instance.index, name.clone()));
                    via_input.push(*up);
                }
                InputBinding::Many { instances, .. } => {
                    for up in instances {
                        edges.push((*up, instance.index, name.clone()));
                        via_input.push(*up);
                    }
                }
            }
        }
        for dep in &instance.deps {
            if !via_input.contains(dep) {
                edges.push((*dep, instance.index, "needs".into()));
            }
        }
    }
    edges
}
