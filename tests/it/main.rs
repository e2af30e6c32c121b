//! The one integration test binary: runs the real `mailplan` executable, against real servers
//! on 127.0.0.1 where it talks to any (see `support`).

mod apply;
mod harness;
mod support;
mod validate;
