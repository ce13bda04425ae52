//! Test support, used only by tests: real S3 servers in containers, a TLS terminator with a
//! fresh CA, a forward proxy, and moto for STS.
//!
//! The S3 backend is chosen by `PLX_TEST_S3` (`minio`, `s3s`, `garage`); by default the first
//! whose image is on this machine. Images are never pulled here: `cargo xtask images` builds
//! them. Every container carries the label `plx-testkit=1`, is removed when its fixture is
//! dropped, and `cargo xtask test` removes any left behind by a killed run.

mod cases;
mod disk;
mod embedded;
mod faults;
mod files;
mod helm;
mod latency;
mod moto;
mod polyaxon;
mod proxy;
pub mod s3;
pub mod soak;
mod tls;

pub use crate::{
    cases::{cases, fuzz_inputs, model_cases, report, run_cases},
    disk::Disk,
    embedded::Embedded,
    faults::{Fault, FaultProxy, Random},
    files::{Tmpfs, all_files, bytes, landed_files, visible_files},
    helm::{helm_harness, helm_python},
    latency::{Change, Counts, LatencyProxy, Network},
    moto::Moto,
    polyaxon::{polyaxon_converter, polyaxon_python},
    proxy::{HttpProxy, TcpForwarder},
    s3::{Backend, S3Server, client_for},
    tls::{Pki, TlsProxy},
};

/// The label on every container this crate starts.
pub const LABEL: &str = "plx-testkit";

/// The workspace root, for tools xtask installs under `target/`.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
