//! `plx-webhook`: a validating admission webhook that refuses connection catalogs Polyaxon would
//! choke on, with every problem at once, before any agent or job reads them.
//!
//! It reviews ConfigMaps and Secrets that carry Polyaxon's agent catalog keys and Pods whose
//! containers carry `POLYAXON_CONNECTIONS_CATALOG`, using plx-connections' rules and codes (the
//! same as `plx-init validate`), and, when it watches the cluster, checks that the Secrets and
//! ConfigMaps the connections name exist and hold the keys they need.

pub mod cache;
pub mod check;
pub mod review;
pub mod server;

pub use crate::{
    cache::Cache,
    check::{Code, Keys, Object, Problem, RefKind},
    review::{Answer, Policy, Reject, answer},
};
