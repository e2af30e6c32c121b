//! The plan language: source files, diagnostics, secret references and the validated model.
//!
//! Pure: nothing here reads the disk or the network. Entry points: [`model::Plan`] (what later
//! stages consume), [`diag::Diagnostic`] (the layer's one error type), [`source::SourceFile`].

pub mod decode;
pub mod diag;
pub mod model;
pub mod secret;
pub mod source;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

use diag::Diagnostics;
use model::Plan;
use source::SourceFile;

/// Parse and validate a plan's text. Returns the plan when no error was found, and every
/// diagnostic (errors and warnings) in source order either way.
pub fn load(source: &Arc<SourceFile>, path: &Path) -> (Option<Plan>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let plan = match yaml::parse(source) {
        Ok((root, duplicates)) => {
            diags.extend(duplicates);
            validate::validate(source, &root, path, &mut diags)
        }
        Err(d) => {
            diags.push(d);
            None
        }
    };
    diags.sort();
    (plan, diags)
}
