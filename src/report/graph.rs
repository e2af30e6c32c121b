//! The step graph as Graphviz DOT or a Mermaid flowchart (`mailplan graph`).

use std::io::{self, Write};

use crate::graph::{Step, StepGraph};
use crate::plan::model::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Mermaid,
}

/// A step's label: its kind and what it is about.
pub fn label(plan: &Plan, step: &Step) -> String {
    step.key(plan)
}

pub fn render(
    plan: &Plan,
    graph: &StepGraph,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    let g = &graph.graph;
    match format {
        Format::Dot => {
            writeln!(out, "digraph {:?} {{", plan.name)?;
            writeln!(out, "  rankdir=LR;\n  node [shape=box];")?;
            for id in g.node_indices() {
                writeln!(out, "  s{} [label={:?}];", id.index(), label(plan, &g[id]))?;
            }
            for e in g.edge_indices() {
                if let Some((a, b)) = g.edge_endpoints(e) {
                    writeln!(out, "  s{} -> s{};", a.index(), b.index())?;
                }
            }
            writeln!(out, "}}")
        }
        Format::Mermaid => {
            writeln!(out, "flowchart LR")?;
            for id in g.node_indices() {
                // Mermaid labels are quoted; a quote inside is written as #quot;.
                let text = label(plan, &g[id]).replace('"', "#quot;");
                writeln!(out, "  s{}[\"{text}\"]", id.index())?;
            }
            for e in g.edge_indices() {
                if let Some((a, b)) = g.edge_endpoints(e) {
                    writeln!(out, "  s{} --> s{}", a.index(), b.index())?;
                }
            }
            Ok(())
        }
    }
}
