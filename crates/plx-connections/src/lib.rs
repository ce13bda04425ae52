//! Polyaxon's data connections as a typed model.
//!
//! Reads every form Polyaxon users write (Helm values, the agent's and the pod's JSON variables,
//! ConfigMaps, plain lists, operations and components), validates them in one pass that reports
//! every problem with a JSON Pointer and a fix, and describes them as JSON Schemas.
//!
//! ```
//! let report = plx_connections::validate("- {name: data, kind: s3, schema: {bucket: 's3://bucket/p'}, secret: {name: s}}", &[]);
//! assert!(!report.has_errors());
//! assert_eq!(report.catalog().unwrap().connections[0].store_path(), Some("s3://bucket/p"));
//! ```

mod commands;
mod diag;
mod kind;
mod load;
mod model;
mod objects;
mod parse;
mod readers;
mod rules;
pub mod schema;
mod spans;

pub use crate::{
    commands::runs_itself,
    diag::{Code, Diagnostic, Severity},
    kind::{Kind, SchemaShape, UnknownKind},
    load::{
        AGENT_ARTIFACTS_STORE, AGENT_CONNECTIONS, CONNECTIONS_CATALOG, Content, Form,
        MAX_DOCUMENT_BYTES, MAX_MANIFESTS_BYTES, Report, catalog_from_json, load, pod_catalog,
        read_documents, read_manifests, read_value, validate, validate_value,
    },
    model::{
        Artifacts, BucketSchema, Catalog, ClaimSchema, Connection, ConnectionSchema,
        DEFAULT_CONTEXT_ROOT, Env, EnvVar, GitSchema, HostPathSchema, INIT_EXCLUSIVE, Init,
        InitFile, InitGit, JobSection, LookupError, PathEntry, Pull, PullMode, RegistrySchema,
        Resource,
    },
    objects::{CATALOG_KEYS, carried_catalog, catalog_in},
};
