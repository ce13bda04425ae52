//! plx-init's integration tests: the real binary, as users and Polyaxon run it (the conformance runner is its own harness-less binary).
//!
//! One test binary per crate (ripgrep's and rust-analyzer's layout): each module is one file of
//! tests, and the crate links its dependencies once. One file: `cargo test --test it -- NAME::`.

mod agree;
mod artifacts;
mod cache;
mod check;
mod image;
mod kill;
mod logs;
mod manifest;
mod many;
mod pod;
mod room;
mod secrets;
mod validate;
