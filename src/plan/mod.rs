//! The plan language: source files, diagnostics, secret references and the validated model.
//!
//! Pure: nothing here reads the disk or the network. Entry points: [`model::Plan`] (what later
//! stages consume), [`diag::Diagnostic`] (the layer's one error type), [`source::SourceFile`].

pub mod decode;
pub mod diag;
pub mod model;
pub mod secret;
pub mod source;
pub mod yaml;
