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
    match format {
        Format::Dot => {
            writeln!(out, "digraph {:?} {{", plan.name)?;
            writeln!(out, "  rankdir=LR;\n  node [shape=box];")?;
            for id in graph.ids() {
                writeln!(
                    out,
                    "  s{} [label={:?}];",
                    id.index(),
                    label(plan, graph.step(id))
                )?;
            }
            for (a, b) in graph.edges() {
                writeln!(out, "  s{} -> s{};", a.index(), b.index())?;
            }
            writeln!(out, "}}")
        }
        Format::Mermaid => {
            writeln!(out, "flowchart LR")?;
            for id in graph.ids() {
                // Mermaid labels are quoted; a quote inside is written as #quot;.
                let text = label(plan, graph.step(id)).replace('"', "#quot;");
                writeln!(out, "  s{}[\"{text}\"]", id.index())?;
            }
            for (a, b) in graph.edges() {
                writeln!(out, "  s{} --> s{}", a.index(), b.index())?;
            }
            Ok(())
        }
    }
}
