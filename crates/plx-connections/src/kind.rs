//! The 45 connection kinds of Polyaxon 2.18 (`vents.providers.kinds.ProviderKind`).

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::Serialize;

macro_rules! kinds {
    ($($variant:ident = $name:literal,)*) => {
        /// A connection kind, spelled as in Polyaxon (`s3`, `volume_claim`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
        pub enum Kind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Kind {
            /// Every kind, in Polyaxon's order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name as written in YAML.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    HostPath = "host_path",
    VolumeClaim = "volume_claim",
    Gcs = "gcs",
    S3 = "s3",
    Wasb = "wasb",
    Registry = "registry",
    Git = "git",
    Aws = "aws",
    Gcp = "gcp",
    Azure = "azure",
    Mysql = "mysql",
    Postgres = "postgres",
    Oracle = "oracle",
    Vertica = "vertica",
    Sqlite = "sqlite",
    Mssql = "mssql",
    Redis = "redis",
    Presto = "presto",
    Mongo = "mongo",
    Cassandra = "cassandra",
    Ftp = "ftp",
    Grpc = "grpc",
    Hdfs = "hdfs",
    Http = "http",
    PigCli = "pig_cli",
    HiveCli = "hive_cli",
    HiveMetastore = "hive_metastore",
    HiveServer2 = "hive_server2",
    Jdbc = "jdbc",
    Jenkins = "jenkins",
    Samba = "samba",
    Snowflake = "snowflake",
    Ssh = "ssh",
    Cloudant = "cloudant",
    Databricks = "databricks",
    Segment = "segment",
    Slack = "slack",
    Teams = "teams",
    Email = "email",
    Discord = "discord",
    Mattermost = "mattermost",
    Pagerduty = "pagerduty",
    Hipchat = "hipchat",
    Webhook = "webhook",
    Custom = "custom",
}

/// What shape a kind's `schema` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaShape {
    /// `{bucket}`: s3, gcs, wasb.
    Bucket,
    /// `{volumeClaim, mountPath, readOnly}`.
    Claim,
    /// `{hostPath, mountPath, readOnly}`.
    HostPath,
    /// `{url, revision, flags}`.
    Git,
    /// `{url, insecure}`.
    Registry,
    /// Anything: Polyaxon has no built-in handler for the kind.
    Free,
}

impl Kind {
    /// The shape of this kind's `schema`.
    pub fn schema_shape(self) -> SchemaShape {
        match self {
            Kind::S3 | Kind::Gcs | Kind::Wasb => SchemaShape::Bucket,
            Kind::VolumeClaim => SchemaShape::Claim,
            Kind::HostPath => SchemaShape::HostPath,
            Kind::Git => SchemaShape::Git,
            Kind::Registry => SchemaShape::Registry,
            _ => SchemaShape::Free,
        }
    }

    /// Blob stores: s3, gcs, wasb.
    pub fn is_bucket(self) -> bool {
        self.schema_shape() == SchemaShape::Bucket
    }

    /// Mounted stores: host_path, volume_claim.
    pub fn is_mount(self) -> bool {
        matches!(self, Kind::HostPath | Kind::VolumeClaim)
    }

    /// The kinds plx-init pulls itself: s3 (downloaded) and the mounts (copied). Polyaxon's own
    /// initializer pulls the others (gcs, wasb).
    pub fn is_pullable(self) -> bool {
        self == Kind::S3 || self.is_mount()
    }

    /// Kinds that can hold artifacts (and so be the artifacts store or feed `init.artifacts`).
    pub fn is_artifact(self) -> bool {
        self.is_bucket() || self.is_mount()
    }

    /// The URL schemes a `bucket` of this kind may start with.
    pub fn bucket_schemes(self) -> &'static [&'static str] {
        match self {
            Kind::S3 => &["s3://"],
            Kind::Gcs => &["gs://"],
            Kind::Wasb => &["wasbs://", "wasb://", "az://"],
            _ => &[],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown connection kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownKind(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_45_kinds_with_unique_names() {
        assert_eq!(Kind::ALL.len(), 45);
        let mut names: Vec<_> = Kind::ALL.iter().map(|kind| kind.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 45);
    }

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::json!(kind.as_str()))
            );
        }
        assert!("S3".parse::<Kind>().is_err());
    }

    #[test]
    fn artifact_kinds_are_the_five_stores() {
        let artifact: Vec<_> = Kind::ALL
            .iter()
            .filter(|kind| kind.is_artifact())
            .map(|kind| kind.as_str())
            .collect();
        assert_eq!(artifact, ["host_path", "volume_claim", "gcs", "s3", "wasb"]);
    }
}
