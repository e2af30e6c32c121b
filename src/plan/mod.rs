//! The plan language: source files, diagnostics, secret references and the validated model.
//!
//! Pure: nothing here reads the disk or the network; CSV imports are read through a
//! [`FileReader`] the caller supplies. Entry points: [`load_with`] (text → [`model::Plan`], what
//! later stages consume), [`diag::Diagnostic`] (the layer's one error type),
//! [`source::SourceFile`].
//!
//! The stages, in order: [`yaml`] (text → spanned nodes), [`decode`] (typed reading of the
//! nodes), [`import`] (CSV rows), [`validate`] (nodes → [`model::Plan`]: its files
//! `validate::sections`, `imports`, `accounts`, `checks` and `after` each read or check one
//! concern), then [`diag`], [`secret`] and [`source`] beside them all, and [`schema`] (the JSON
//! Schema, generated from `Raw*` types that mirror the key lists of `validate`).

pub mod decode;
pub mod diag;
pub mod import;
pub mod model;
pub mod schema;
pub mod secret;
pub mod source;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

use diag::Diagnostics;
pub use import::FileReader;
use model::Plan;
use source::SourceFile;

/// Parse and validate a plan's text that imports no CSV file (an `import:` is reported as
/// unreadable). See [`load_with`].
pub fn load(source: &Arc<SourceFile>, path: &Path) -> (Option<Plan>, Diagnostics) {
    load_with(source, path, &import::NoFiles)
}

/// Parse and validate a plan's text, reading its CSV imports through `files` (paths joined to
/// `path`'s folder). Returns the plan when no error was found, and every diagnostic (errors and
/// warnings) in a stable order either way.
pub fn load_with(
    source: &Arc<SourceFile>,
    path: &Path,
    files: &dyn FileReader,
) -> (Option<Plan>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let plan = match yaml::parse(source) {
        Ok((root, duplicates)) => {
            diags.extend(duplicates);
            validate::validate(source, &root, path, files, &mut diags)
        }
        Err(d) => {
            diags.push(d);
            None
        }
    };
    diags.sort();
    diags.hide_secrets();
    (plan, diags)
}
