//! plx-webhook's integration tests: real HTTPS, real Helm, the real binary and its image.
//!
//! One test binary per crate (ripgrep's and rust-analyzer's layout): each module is one file of
//! tests, and the crate links its dependencies once. One file: `cargo test --test it -- NAME::`.

mod binary;
mod cache;
mod chart;
mod conformance;
mod fuzz_corpus;
mod https;
mod image;
mod support;
