//! The one integration test binary: runs the real `mailplan` executable.

mod validate;
