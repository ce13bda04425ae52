//! The typed model. Values of these types come only from [`crate::parse`], which has checked them;
//! serialising them gives Polyaxon's camelCase form back.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer, ser::SerializeMap, ser::SerializeSeq};
use serde_json::{Map, Value};

use crate::{kind::Kind, rules};

pub use crate::spans::{INIT_EXCLUSIVE, INIT_FIELDS};

/// A connection: a named store, host or service that jobs refer to.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Polyaxon connection", transform = crate::spans::connection_rules)]
pub struct Connection {
    /// A DNS-1123 label: it becomes volume and container names.
    #[schemars(extend("pattern" = rules::NAME_PATTERN, "maxLength" = rules::NAME_MAX))]
    pub name: String,
    /// One of Polyaxon's 45 kinds.
    pub kind: Kind,
    /// Free text.
    pub description: Option<String>,
    /// Free labels.
    pub tags: Option<Vec<String>>,
    /// Where the data is; its shape depends on `kind`.
    pub schema: Option<ConnectionSchema>,
    /// The Secret that holds the credentials.
    pub secret: Option<Resource>,
    /// The ConfigMap that holds settings.
    pub config_map: Option<Resource>,
    /// Variables set in every container that uses the connection.
    pub env: Option<Env>,
    /// Annotations added to pods that use the connection.
    pub annotations: Option<BTreeMap<String, String>>,
    /// An alias is not mounted by the Helm chart's service pods.
    pub is_alias: Option<bool>,
}

impl Connection {
    /// Where the data lives, as Polyaxon computes it: the bucket URL or the mount path, without a
    /// trailing `/`. None for kinds that hold no artifacts.
    pub fn store_path(&self) -> Option<&str> {
        let path = match self.schema.as_ref()? {
            ConnectionSchema::Bucket(schema) => &schema.bucket,
            ConnectionSchema::Claim(schema) => &schema.mount_path,
            ConnectionSchema::HostPath(schema) => &schema.mount_path,
            _ => return None,
        };
        let trimmed = path.trim_end_matches('/');
        // A bare "/" mount stays "/", and "s3://b/" becomes "s3://b".
        Some(if trimmed.is_empty() || trimmed.ends_with(':') {
            path.as_str()
        } else {
            trimmed
        })
    }

    /// The `env`, empty when absent.
    pub fn env_vars(&self) -> &[EnvVar] {
        self.env.as_ref().map_or(&[], |env| env.0.as_slice())
    }
}

/// The `schema` of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ConnectionSchema {
    /// s3, gcs, wasb.
    Bucket(BucketSchema),
    /// volume_claim.
    Claim(ClaimSchema),
    /// host_path.
    HostPath(HostPathSchema),
    /// git.
    Git(GitSchema),
    /// registry.
    Registry(RegistrySchema),
    /// Any other kind: a free map.
    Other(Map<String, Value>),
}

/// The schema of s3, gcs and wasb connections.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketSchema {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `wasbs://container@account.blob.core.windows.net/prefix`.
    pub bucket: String,
}

/// The schema of volume_claim connections.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimSchema {
    /// The PersistentVolumeClaim's name.
    #[schemars(extend("pattern" = rules::RESOURCE_NAME_PATTERN, "maxLength" = rules::RESOURCE_NAME_MAX))]
    pub volume_claim: String,
    /// Where the claim is mounted.
    #[schemars(extend("pattern" = rules::ABSOLUTE_PATH_PATTERN))]
    pub mount_path: String,
    /// Mount read-only.
    pub read_only: Option<bool>,
}

/// The schema of host_path connections.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathSchema {
    /// The path on the node.
    #[schemars(extend("pattern" = rules::ABSOLUTE_PATH_PATTERN))]
    pub host_path: String,
    /// Where it is mounted.
    #[schemars(extend("pattern" = rules::ABSOLUTE_PATH_PATTERN))]
    pub mount_path: String,
    /// Mount read-only.
    pub read_only: Option<bool>,
}

/// The schema of git connections.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSchema {
    /// The repository URL.
    pub url: Option<String>,
    /// A branch, tag or commit.
    pub revision: Option<String>,
    /// Extra `git clone` flags.
    pub flags: Option<Vec<String>>,
}

/// The schema of registry connections.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySchema {
    /// The registry host, e.g. `registry.example.com/team`.
    pub url: String,
    /// Plain HTTP or an unverified certificate.
    pub insecure: Option<bool>,
}

/// A connection's `secret` or `configMap`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::spans::resource_rules)]
pub struct Resource {
    /// The Secret's or ConfigMap's name, a DNS-1123 subdomain.
    #[schemars(extend("pattern" = rules::RESOURCE_NAME_PATTERN, "maxLength" = rules::RESOURCE_NAME_MAX))]
    pub name: String,
    /// Mount the keys as files here instead of exposing them as env.
    #[schemars(extend("pattern" = rules::ABSOLUTE_PATH_PATTERN))]
    pub mount_path: Option<String>,
    /// The keys to expose; all of them when absent.
    pub items: Option<Vec<String>>,
    /// The files' mode when mounted: an integer, or an octal string such as "0400".
    #[schemars(schema_with = "default_mode_schema")]
    pub default_mode: Option<u32>,
    /// Used by Polyaxon's local and docker runners.
    pub host_path: Option<String>,
    /// Requested directly rather than through a connection.
    pub is_requested: Option<bool>,
}

fn default_mode_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A file mode: an integer from 0 to 511, or an octal string such as \"0400\".",
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": rules::MODE_MAX},
            {"type": "string", "pattern": rules::OCTAL_MODE_PATTERN},
            {"type": "null"},
        ]
    })
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value; numbers and booleans are kept as the text they were written as.
    pub value: String,
}

/// A connection's `env`, normalised from any of the forms Polyaxon users write: a map, a list of
/// `[key, value]` pairs, or a list of `{name, value}` objects. Order is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Env(pub Vec<EnvVar>);

impl Serialize for Env {
    // A map, the one form both Polyaxon's model and its agent read.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for var in &self.0 {
            map.serialize_entry(&var.name, &var.value)?;
        }
        map.end()
    }
}

impl JsonSchema for Env {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Env".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let scalar = json_schema!({"type": ["string", "number", "boolean"]});
        json_schema!({
            "description": "Environment variables: a map, a list of [name, value] pairs, or a list of {name, value} objects.",
            "anyOf": [
                {
                    "type": "object",
                    "propertyNames": {"pattern": rules::ENV_NAME_PATTERN},
                    "additionalProperties": scalar,
                },
                {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "prefixItems": [{"type": "string", "pattern": rules::ENV_NAME_PATTERN}, scalar],
                        "minItems": 2,
                        "maxItems": 2,
                    }
                },
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "pattern": rules::ENV_NAME_PATTERN},
                            "value": scalar,
                        },
                        "required": ["name", "value"],
                        "additionalProperties": false,
                    }
                }
            ]
        })
    }
}

/// Connections and the optional artifacts store.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Polyaxon connection catalog", transform = crate::spans::catalog_rules)]
pub struct Catalog {
    /// The connections jobs can name.
    pub connections: Vec<Connection>,
    /// The default store for artifacts (s3, gcs, wasb, host_path or volume_claim).
    pub artifacts_store: Option<Connection>,
}

impl Catalog {
    /// The connection of that name, the artifacts store included.
    pub fn get(&self, name: &str) -> Option<&Connection> {
        self.all().find(|connection| connection.name == name)
    }

    /// The connections, then the artifacts store.
    pub fn all(&self) -> impl Iterator<Item = &Connection> {
        self.connections.iter().chain(self.artifacts_store.as_ref())
    }

    /// The connection of that name, or an error that lists the names there are.
    pub fn find(&self, name: &str) -> Result<&Connection, LookupError> {
        self.get(name).ok_or_else(|| LookupError::Unknown {
            name: name.to_owned(),
            known: self
                .all()
                .map(|connection| connection.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Why a program could not find its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No catalog to find the connection in.
    #[error(
        "no connections catalog: POLYAXON_CONNECTIONS_CATALOG is not set (give a catalog file instead)"
    )]
    NoCatalog,
    /// The catalog does not parse or validate.
    #[error("the connections catalog is invalid: {0}")]
    Invalid(String),
    /// The catalog has no connection of that name.
    #[error("no connection named `{name}` in the catalog; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names the catalog has.
        known: String,
    },
}

/// An init entry or a `[from, to]` rename: where to read and where to write, relative to the
/// connection's store and the entry's destination root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEntry {
    /// `"x"`: read `x`, write `x`.
    Same(String),
    /// `["x", "y"]`: read `x`, write `y`.
    Renamed(String, String),
}

impl PathEntry {
    /// The path in the store.
    pub fn from(&self) -> &str {
        match self {
            PathEntry::Same(path) | PathEntry::Renamed(path, _) => path,
        }
    }

    /// The path under the destination root.
    pub fn to(&self) -> &str {
        match self {
            PathEntry::Same(path) | PathEntry::Renamed(_, path) => path,
        }
    }
}

impl Serialize for PathEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PathEntry::Same(path) => serializer.serialize_str(path),
            PathEntry::Renamed(from, to) => {
                let mut seq = serializer.serialize_seq(Some(2))?;
                seq.serialize_element(from)?;
                seq.serialize_element(to)?;
                seq.end()
            }
        }
    }
}

impl JsonSchema for PathEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PathEntry".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let relative = json_schema!({"type": "string", "pattern": rules::RELATIVE_ENTRY_PATTERN});
        json_schema!({
            "description": "A relative path, or a [from, to] pair of relative paths.",
            "anyOf": [
                relative,
                {"type": "array", "prefixItems": [relative, relative], "minItems": 2, "maxItems": 2},
            ]
        })
    }
}

/// One entry of a job's `init:` section.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Polyaxon init entry", transform = crate::spans::init_rules)]
pub struct Init {
    /// Files and directories to pull from the connection.
    pub artifacts: Option<Artifacts>,
    /// Paths to pull, file or directory decided when pulling.
    pub paths: Option<Vec<PathEntry>>,
    /// A repository to clone.
    pub git: Option<InitGit>,
    /// A file to write.
    pub file: Option<InitFile>,
    /// A Dockerfile to generate.
    pub dockerfile: Option<Map<String, Value>>,
    /// TensorBoard assets.
    pub tensorboard: Option<Map<String, Value>>,
    /// A lineage to pull (resolved by the control plane).
    pub lineage_ref: Option<String>,
    /// A model version to pull (resolved by the control plane).
    pub model_ref: Option<String>,
    /// An artifact version to pull (resolved by the control plane).
    pub artifact_ref: Option<String>,
    /// The connection to pull from; the artifacts store when absent.
    pub connection: Option<String>,
    /// A custom destination root.
    #[schemars(extend("pattern" = rules::DESTINATION_PATTERN))]
    pub path: Option<String>,
    /// Overrides for the generated init container.
    pub container: Option<Map<String, Value>>,
}

/// `init[].artifacts`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifacts {
    /// Single objects.
    pub files: Option<Vec<PathEntry>>,
    /// Prefixes, pulled recursively.
    pub dirs: Option<Vec<PathEntry>>,
    /// How many objects to pull at once (Polyaxon defines it and ignores it; plx-init uses it).
    #[schemars(range(min = 1, max = 1024))]
    pub workers: Option<u32>,
}

/// `init[].git`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitGit {
    /// The repository URL; the connection's when absent.
    pub url: Option<String>,
    /// A branch, tag or commit.
    pub revision: Option<String>,
    /// Extra `git clone` flags.
    pub flags: Option<Vec<String>>,
}

/// `init[].file`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitFile {
    /// The file's content.
    pub content: String,
    /// Its name under the destination root.
    #[schemars(extend("pattern" = rules::RELATIVE_ENTRY_PATTERN))]
    pub filename: Option<String>,
    /// Its mode, e.g. "+x" or "0755".
    pub chmod: Option<String>,
    /// A file kind hint.
    pub kind: Option<String>,
}

/// Whether a pull is of one object, a prefix, or decided at pull time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullMode {
    /// `artifacts.files`.
    File,
    /// `artifacts.dirs`, or the whole store.
    Dir,
    /// `paths`.
    Check,
}

/// One source → destination pair of an init entry, as Polyaxon's converter derives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pull {
    /// The store path joined with the entry.
    pub source: String,
    /// The absolute local destination.
    pub destination: String,
    /// File, directory or decided at pull time.
    pub mode: PullMode,
}

/// Polyaxon's context root.
pub const DEFAULT_CONTEXT_ROOT: &str = "/plx-context";

impl Init {
    /// The destination root: `path` when given, the bare `<context>/artifacts` for the artifacts
    /// store (or no connection), `<context>/artifacts/<connection>` otherwise.
    pub fn destination_root(&self, artifacts_store: Option<&str>, context_root: &str) -> String {
        if let Some(path) = &self.path {
            return path.trim_end_matches('/').to_owned();
        }
        let artifacts = join(context_root, "artifacts");
        match self.connection.as_deref() {
            Some(name) if Some(name) != artifacts_store => join(&artifacts, name),
            _ => artifacts,
        }
    }

    /// The pulls this entry makes from `connection`'s store: files, then dirs, then paths; the
    /// whole store when it names none.
    pub fn pulls(
        &self,
        connection: &Connection,
        artifacts_store: Option<&str>,
        context_root: &str,
    ) -> Vec<Pull> {
        let root = self.destination_root(artifacts_store, context_root);
        let store = connection.store_path().unwrap_or_default();
        let mut entries: Vec<(&PathEntry, PullMode)> = Vec::new();
        if let Some(artifacts) = &self.artifacts {
            entries.extend(
                artifacts
                    .files
                    .iter()
                    .flatten()
                    .map(|entry| (entry, PullMode::File)),
            );
            entries.extend(
                artifacts
                    .dirs
                    .iter()
                    .flatten()
                    .map(|entry| (entry, PullMode::Dir)),
            );
        }
        entries.extend(
            self.paths
                .iter()
                .flatten()
                .map(|entry| (entry, PullMode::Check)),
        );
        if entries.is_empty() {
            return vec![Pull {
                source: store.to_owned(),
                destination: root,
                mode: PullMode::Dir,
            }];
        }
        entries
            .into_iter()
            .map(|(entry, mode)| Pull {
                source: join(store, entry.from()),
                destination: join(&root, entry.to()),
                mode,
            })
            .collect()
    }
}

fn join(base: &str, rest: &str) -> String {
    let rest = rest.trim_start_matches("./");
    if rest.is_empty() {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{rest}")
    } else {
        format!("{base}/{rest}")
    }
}

/// One `run` (or replica) of a job: the connections it names and its init entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSection {
    /// Where the section is in the document.
    pub path: String,
    /// `connections:`.
    pub connections: Vec<String>,
    /// `init:`.
    pub init: Vec<Init>,
}
