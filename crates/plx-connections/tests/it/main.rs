//! plx-connections' integration tests (the conformance runner is its own harness-less binary).
//!
//! One test binary per crate (ripgrep's and rust-analyzer's layout): each module is one file of
//! tests, and the crate links its dependencies once. One file: `cargo test --test it -- NAME::`.

mod roundtrip;
mod schemas;
