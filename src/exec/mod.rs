//! Execution: what touches the world when a plan runs. Only this layer and `providers/` do disk
//! or network I/O on behalf of a plan.
//!
//! - [`secrets`]: resolving secret references, and checking offline that they can be resolved.

pub mod secrets;
