//! The state store that makes runs resumable; today one backend, [`sqlite`].

mod sqlite;

pub use sqlite::*;
