//! plx-transfer's integration tests, against real S3 servers and a proxy that misbehaves (the conformance runner is its own harness-less binary).
//!
//! One test binary per crate (ripgrep's and rust-analyzer's layout): each module is one file of
//! tests, and the crate links its dependencies once. One file: `cargo test --test it -- NAME::`.

mod checksum;
mod copy;
mod download;
mod far;
mod faults;
mod fuzz_corpus;
mod hostile;
mod layers;
mod memory;
