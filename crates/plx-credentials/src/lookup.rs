//! Polyaxon's key lookup (`vents.config.AppConfig.read_keys`), made deterministic.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use plx_connections::{Connection, ConnectionSchema};
use serde::Serialize;

/// A snapshot of environment variables; tests build one by hand.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment, now.
    pub fn from_process() -> Environment {
        Environment {
            vars: std::env::vars().collect(),
        }
    }

    /// The given variables only.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        }
    }

    /// One variable.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// Where a setting was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Source {
    /// A file under the secret's mount path.
    SecretFile(PathBuf),
    /// A file under the config map's mount path.
    ConfigMapFile(PathBuf),
    /// The connection's free-form `schema`.
    Schema,
    /// The connection's `env`.
    ConnectionEnv,
    /// A process environment variable (its exact name).
    Env(String),
    /// Not set anywhere: a built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::SecretFile(path) => write!(f, "file {}", path.display()),
            Source::ConfigMapFile(path) => write!(f, "file {}", path.display()),
            Source::Schema => f.write_str("connection schema"),
            Source::ConnectionEnv => f.write_str("connection env"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The value, trimmed when it came from a file.
    pub value: String,
    /// Where.
    pub source: Source,
}

/// Looks keys up for one connection, in Polyaxon's order: files named after the key under
/// `secret.mountPath`, then `configMap.mountPath`; the connection's free `schema`; its `env`;
/// the process env; the same key with a `POLYAXON_` prefix.
pub struct Lookup<'a> {
    connection: &'a Connection,
    env: &'a Environment,
}

impl<'a> Lookup<'a> {
    /// A lookup for `connection` in `env`.
    pub fn new(connection: &'a Connection, env: &'a Environment) -> Lookup<'a> {
        Lookup { connection, env }
    }

    /// The first source that has `key`. Polyaxon also tries `key` in lowercase and without
    /// underscores; so do we, but in a fixed order (it uses a set, so its order is arbitrary).
    pub fn get(&self, key: &str) -> Option<Found> {
        let candidates = [
            key.to_owned(),
            key.to_ascii_lowercase(),
            key.to_ascii_lowercase().replace('_', ""),
        ];
        let mounts = [
            (
                self.connection
                    .secret
                    .as_ref()
                    .and_then(|resource| resource.mount_path.as_deref()),
                true,
            ),
            (
                self.connection
                    .config_map
                    .as_ref()
                    .and_then(|resource| resource.mount_path.as_deref()),
                false,
            ),
        ];
        for (mount, is_secret) in mounts {
            let Some(mount) = mount else { continue };
            for candidate in &candidates {
                let path = PathBuf::from(mount).join(candidate);
                // Polyaxon keeps the trailing newline `kubectl create secret --from-file` leaves, which breaks the key.
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let source = if is_secret {
                        Source::SecretFile(path)
                    } else {
                        Source::ConfigMapFile(path)
                    };
                    return Some(Found {
                        value: text.trim().to_owned(),
                        source,
                    });
                }
            }
        }
        if let Some(ConnectionSchema::Other(map)) = &self.connection.schema {
            for candidate in &candidates {
                if let Some(value) = map.get(candidate).and_then(scalar) {
                    return Some(Found {
                        value,
                        source: Source::Schema,
                    });
                }
            }
        }
        for candidate in &candidates {
            if let Some(var) = self
                .connection
                .env_vars()
                .iter()
                .find(|var| &var.name == candidate)
            {
                return Some(Found {
                    value: var.value.clone(),
                    source: Source::ConnectionEnv,
                });
            }
        }
        for prefix in ["", "POLYAXON_"] {
            for candidate in &candidates {
                let name = format!("{prefix}{candidate}");
                if let Some(value) = self.env.get(&name) {
                    return Some(Found {
                        value: value.to_owned(),
                        source: Source::Env(name),
                    });
                }
            }
        }
        None
    }

    /// The first of `keys` found.
    pub fn first(&self, keys: &[&'static str]) -> Option<(&'static str, Found)> {
        keys.iter()
            .find_map(|key| self.get(key).map(|found| (*key, found)))
    }

    /// The mount paths of the connection's secret and config map, for files named in settings.
    pub fn mount_paths(&self) -> Vec<PathBuf> {
        [&self.connection.secret, &self.connection.config_map]
            .into_iter()
            .filter_map(|resource| {
                resource
                    .as_ref()
                    .and_then(|resource| resource.mount_path.as_deref())
                    .map(PathBuf::from)
            })
            .collect()
    }
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(yaml: &str) -> Connection {
        let report = plx_connections::validate(yaml, &[]);
        report
            .catalog()
            .and_then(|catalog| catalog.connections.first().cloned())
            .unwrap_or_else(|| panic!("{:?}", report.diagnostics))
    }

    /// Each row: where the key is set (the first wins), and the source expected.
    #[test]
    fn sources_in_polyaxon_order() {
        let dir = std::env::temp_dir().join(format!("plx-lookup-{}", std::process::id()));
        let (secret_dir, config_dir) = (dir.join("secret"), dir.join("config"));
        std::fs::create_dir_all(&secret_dir).expect("dir");
        std::fs::create_dir_all(&config_dir).expect("dir");
        std::fs::write(secret_dir.join("IN_SECRET"), "s\n").expect("write");
        std::fs::write(config_dir.join("IN_SECRET"), "c").expect("write");
        std::fs::write(config_dir.join("IN_CONFIG"), " c \n").expect("write");
        std::fs::write(secret_dir.join("lower_key"), "lower").expect("write");
        let conn = connection(&format!(
            "{{name: db, kind: postgres, secret: {{name: s, mountPath: '{}'}}, configMap: {{name: c, mountPath: '{}'}}, schema: {{IN_SCHEMA: 1, IN_ENV: schema}}, env: {{IN_ENV: connection, IN_CONN_ENV: e}}}}",
            secret_dir.display(),
            config_dir.display()
        ));
        let env = Environment::from_pairs([
            ("IN_CONN_ENV", "process"),
            ("IN_PROCESS", "p"),
            ("POLYAXON_IN_PREFIX", "x"),
            ("IN_ENV", "process"),
        ]);
        let lookup = Lookup::new(&conn, &env);
        let table: &[(&str, Option<(&str, Source)>)] = &[
            (
                "IN_SECRET",
                Some(("s", Source::SecretFile(secret_dir.join("IN_SECRET")))),
            ),
            (
                "IN_CONFIG",
                Some(("c", Source::ConfigMapFile(config_dir.join("IN_CONFIG")))),
            ),
            ("IN_SCHEMA", Some(("1", Source::Schema))),
            ("IN_ENV", Some(("schema", Source::Schema))),
            ("IN_CONN_ENV", Some(("e", Source::ConnectionEnv))),
            (
                "IN_PROCESS",
                Some(("p", Source::Env("IN_PROCESS".to_owned()))),
            ),
            (
                "IN_PREFIX",
                Some(("x", Source::Env("POLYAXON_IN_PREFIX".to_owned()))),
            ),
            (
                "LOWER_KEY",
                Some(("lower", Source::SecretFile(secret_dir.join("lower_key")))),
            ),
            ("NOWHERE", None),
        ];
        for (key, expected) in table {
            let found = lookup.get(key).map(|found| (found.value, found.source));
            let expected = expected
                .as_ref()
                .map(|(value, source)| ((*value).to_owned(), source.clone()));
            assert_eq!(found, expected, "{key}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
