//! plx-credentials' integration tests, against real S3 and STS servers.
//!
//! One test binary per crate (ripgrep's and rust-analyzer's layout): each module is one file of
//! tests, and the crate links its dependencies once. One file: `cargo test --test it -- NAME::`.

mod http;
mod s3;
