//! What the webhook checks in an object: the catalogs it carries (with plx-connections' own
//! rules and codes) and, through [`Keys`], whether the Secrets and ConfigMaps they name exist
//! and hold the keys they need.

use std::collections::BTreeSet;

use plx_connections::{Catalog, Connection, Diagnostic, Kind, Severity};
use serde_json::{Value, json};

/// One problem, as the API server will show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// A JSON Pointer into the object under review.
    pub path: String,
    /// The stable code: plx-connections' own, or one only the webhook can check.
    pub code: Code,
    /// What is wrong and what to do.
    pub message: String,
}

/// The codes a review gives: the model's, and the ones only a webhook that sees the cluster and
/// the pod can check. Stable ids users and tools match on, as the model's are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A rule of the connection model (plx-connections' codes).
    Model(plx_connections::Code),
    /// A connection names a Secret that does not exist in the namespace.
    SecretNotFound,
    /// A connection names a ConfigMap that does not exist in the namespace.
    ConfigMapNotFound,
    /// A Secret or ConfigMap lacks a key the connection needs.
    KeyNotFound,
    /// An init container runs a Polyaxon command in an image that cannot run it.
    InitImageCannotRun,
}

impl Code {
    /// The kebab-case id.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Model(code) => code.as_str(),
            Code::SecretNotFound => "secret-not-found",
            Code::ConfigMapNotFound => "configmap-not-found",
            Code::KeyNotFound => "key-not-found",
            Code::InitImageCannotRun => "init-image-cannot-run",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Problem {
    fn from_diagnostic(prefix: &str, diagnostic: &Diagnostic) -> Problem {
        Problem {
            severity: diagnostic.severity,
            path: format!("{prefix}{}", diagnostic.path),
            code: Code::Model(diagnostic.code),
            message: diagnostic.message.clone(),
        }
    }
}

/// Which object a connection refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

/// The key names of the Secrets and ConfigMaps in the cluster (never their values).
pub trait Keys: Send + Sync {
    /// `None` when the object does not exist.
    fn keys(&self, kind: RefKind, namespace: &str, name: &str) -> Option<BTreeSet<String>>;

    /// Whether objects in `namespace` are known at all: a webhook that watches only some
    /// namespaces cannot tell "missing" from "not watched" elsewhere, so it says nothing there.
    fn watches(&self, _namespace: &str) -> bool {
        true
    }
}

/// Cross-object checks, when the webhook watches the cluster.
pub struct CrossCheck<'a> {
    /// The cache.
    pub keys: &'a dyn Keys,
    /// The namespace of the object under review.
    pub namespace: &'a str,
    /// Errors instead of warnings.
    pub strict: bool,
}

/// The problems of `object` (a ConfigMap, a Secret or a Pod, by `kind`); `None` when the object
/// carries no catalog and is none of our business.
pub fn review(kind: &str, object: &Value, cross: Option<&CrossCheck<'_>>) -> Option<Vec<Problem>> {
    match kind {
        "ConfigMap" | "Secret" => carried(kind, object, cross),
        "Pod" => pod(object, cross),
        _ => None,
    }
}

/// The catalog a ConfigMap or Secret carries, read as `plx-init validate` reads it (one reader,
/// plx-connections' `carried_catalog`), and the Secrets and ConfigMaps its connections name.
fn carried(kind: &str, object: &Value, cross: Option<&CrossCheck<'_>>) -> Option<Vec<Problem>> {
    let report = plx_connections::carried_catalog(kind, object, &[])?;
    let mut problems: Vec<Problem> = report
        .diagnostics
        .iter()
        .map(|diagnostic| Problem::from_diagnostic("", diagnostic))
        .collect();
    if let (Some(cross), Some(plx_connections::Content::Catalog(catalog))) =
        (cross, &report.content)
    {
        let pod = report.form == Some(plx_connections::Form::PodEnv);
        problems.extend(references(catalog, cross, |connection| {
            let key = if pod {
                plx_connections::CONNECTIONS_CATALOG
            } else if catalog.artifacts_store.as_ref().map(|store| &store.name)
                == Some(&connection.name)
            {
                plx_connections::AGENT_ARTIFACTS_STORE
            } else {
                plx_connections::AGENT_CONNECTIONS
            };
            format!("/data/{key}")
        }));
    }
    Some(problems)
}

fn pod(object: &Value, cross: Option<&CrossCheck<'_>>) -> Option<Vec<Problem>> {
    let spec = object.get("spec")?;
    let mut problems = Vec::new();
    let mut found = false;
    for list in ["initContainers", "containers"] {
        for (index, container) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("/spec/{list}/{index}");
            let Some((env_index, text)) = container
                .get("env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .find(|(_, var)| var["name"] == plx_connections::CONNECTIONS_CATALOG)
                .and_then(|(env_index, var)| Some((env_index, var.get("value")?.as_str()?)))
            else {
                continue;
            };
            found = true;
            let value_at = format!("{at}/env/{env_index}/value");
            let report = plx_connections::validate_value(
                &json!({plx_connections::CONNECTIONS_CATALOG: text}),
                &[],
            );
            let prefix = format!("/{}", plx_connections::CONNECTIONS_CATALOG);
            problems.extend(report.diagnostics.iter().map(|diagnostic| {
                let mut problem = Problem::from_diagnostic("", diagnostic);
                problem.path = match problem.path.strip_prefix(&prefix) {
                    Some(rest) => format!("{value_at}{rest}"),
                    None => value_at.clone(),
                };
                problem
            }));
            let Some(plx_connections::Content::Catalog(catalog)) = &report.content else {
                continue;
            };
            for name in named_connections(container) {
                if catalog.get(&name).is_none() {
                    let known: Vec<&str> = catalog.all().map(|c| c.name.as_str()).collect();
                    problems.push(Problem {
                        severity: Severity::Error,
                        path: format!("{at}/args"),
                        code: Code::Model(plx_connections::Code::UnknownConnection),
                        message: format!(
                            "the init command pulls from connection `{name}`, which this container's POLYAXON_CONNECTIONS_CATALOG lacks (it has: {}); the pull would fail",
                            known.join(", ")
                        ),
                    });
                }
            }
            if let Some(cross) = cross {
                problems.extend(references(catalog, cross, |_| value_at.clone()));
            }
        }
    }
    found.then_some(problems)
}

/// The connections an init container's command names: plx-init's `--connection NAME` and
/// Polyaxon's `--connection-name=NAME`, also inside a `sh -c` script.
fn named_connections(container: &Value) -> BTreeSet<String> {
    let words: Vec<String> = ["command", "args"]
        .iter()
        .flat_map(|field| {
            container
                .get(*field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(Value::as_str)
        .flat_map(|text| text.split(|c: char| c.is_whitespace() || c == ';'))
        .filter(|word| !word.is_empty())
        .map(|word| word.trim_matches(|c| c == '"' || c == '\'').to_owned())
        .collect();
    let mut names = BTreeSet::new();
    for (index, word) in words.iter().enumerate() {
        if let Some(name) = word
            .strip_prefix("--connection-name=")
            .or_else(|| word.strip_prefix("--connection="))
        {
            names.insert(name.to_owned());
        } else if (word == "--connection" || word == "--connection-name")
            && let Some(next) = words.get(index + 1)
        {
            names.insert(next.clone());
        }
    }
    names
}

/// Every Secret and ConfigMap the catalog names, checked against the cluster.
fn references(
    catalog: &Catalog,
    cross: &CrossCheck<'_>,
    path: impl Fn(&Connection) -> String,
) -> Vec<Problem> {
    let severity = if cross.strict {
        Severity::Error
    } else {
        Severity::Warning
    };
    let mut problems = Vec::new();
    if !cross.keys.watches(cross.namespace) {
        return problems;
    }
    for connection in catalog.all() {
        for (kind, resource) in [
            (RefKind::Secret, connection.secret.as_ref()),
            (RefKind::ConfigMap, connection.config_map.as_ref()),
        ] {
            let Some(resource) = resource else { continue };
            let (what, missing) = match kind {
                RefKind::Secret => ("Secret", Code::SecretNotFound),
                RefKind::ConfigMap => ("ConfigMap", Code::ConfigMapNotFound),
            };
            let Some(keys) = cross.keys.keys(kind, cross.namespace, &resource.name) else {
                problems.push(Problem {
                    severity,
                    path: path(connection),
                    code: missing,
                    message: format!(
                        "connection `{}` names {what} `{}`, which does not exist in namespace `{}`: create it before jobs use the connection",
                        connection.name, resource.name, cross.namespace
                    ),
                });
                continue;
            };
            let mut wanted: Vec<String> = resource.items.iter().flatten().cloned().collect();
            // s3 keys with nowhere else to come from must be in the Secret.
            let mounted = resource.mount_path.is_some();
            let in_env = |key: &str| connection.env_vars().iter().any(|var| var.name == key);
            if kind == RefKind::Secret
                && connection.kind == Kind::S3
                && !mounted
                && resource.items.is_none()
            {
                wanted.extend(
                    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
                        .iter()
                        .filter(|key| !in_env(key))
                        .map(|key| (*key).to_owned()),
                );
            }
            for key in wanted {
                if !keys.contains(&key) {
                    problems.push(Problem {
                        severity,
                        path: path(connection),
                        code: Code::KeyNotFound,
                        message: format!(
                            "connection `{}` needs key `{key}` in {what} `{}`, which has only: {}",
                            connection.name,
                            resource.name,
                            if keys.is_empty() {
                                "no keys".to_owned()
                            } else {
                                keys.iter().cloned().collect::<Vec<_>>().join(", ")
                            }
                        ),
                    });
                }
            }
        }
    }
    problems
}

/// The init containers of `pod` that run the scratch plx-init image with a command it cannot
/// run: Polyaxon's own commands (auth, git, file, docker generate, tensorboard, `initializer
/// path` for gcs and wasb) or the tools plugin's copies of binaries out of the image. Such a pod
/// fails at start; this says so before, naming the container, the command and the fix. Errors
/// with `strict`, else warnings.
pub fn scratch_image_commands(pod: &Value, strict: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, container) in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !container["image"].as_str().is_some_and(is_scratch_image) {
            continue;
        }
        let name = container["name"].as_str().unwrap_or_default();
        for command in unrunnable(container) {
            problems.push(Problem {
                severity: if strict {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                path: format!("/spec/initContainers/{index}/image"),
                code: Code::InitImageCannotRun,
                message: format!(
                    "init container `{name}` runs `{command}` in the plx-init image, which cannot run it and fails the pod at start; set Polyaxon's `init.image` to the layered image plx-init-polyaxon, or keep the plx-init image to `init[].container.image` of s3, host_path and volume_claim entries"
                ),
            });
        }
    }
    problems
}

/// `plx-init[:tag][@digest]` in any registry; not `plx-init-polyaxon`, the layered image.
fn is_scratch_image(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name = without_digest.rsplit('/').next().unwrap_or(without_digest);
    name.split(':').next() == Some("plx-init")
}

/// What the container would run that the scratch image cannot.
fn unrunnable(container: &Value) -> Vec<String> {
    commands(container)
        .into_iter()
        .filter(|command| !runnable(command))
        .map(|command| command.join(" "))
        .collect()
}

/// The commands an init container runs, each as its words: those of its `sh -c` script, or its
/// `polyaxon` command line. plx-init itself (the image's entrypoint, or named) and a user's own
/// command are none of these.
pub fn commands(container: &Value) -> Vec<Vec<String>> {
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|field| container[*field].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let program = words
        .first()
        .map(|first| first.rsplit('/').next().unwrap_or(first));
    match program {
        Some("sh") if words.get(1) == Some(&"-c") => words
            .get(2)
            .map(|script| script_commands(script))
            .unwrap_or_default(),
        Some("polyaxon") => vec![words.iter().map(|word| (*word).to_owned()).collect()],
        _ => Vec::new(),
    }
}

/// The simple commands of a generated script: split at `;`, `&&`, `||` and the `if`/`then`/`fi`
/// words Polyaxon's converter writes, each as its words.
fn script_commands(script: &str) -> Vec<Vec<String>> {
    script
        .split([';', '\n'])
        .flat_map(|part| part.split("&&"))
        .flat_map(|part| part.split("||"))
        .map(|part| {
            part.split_whitespace()
                .skip_while(|word| matches!(*word, "if" | "then" | "else" | "fi" | "do" | "done"))
                .map(|word| word.trim_matches(|c| c == '"' || c == '\'').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

/// Whether the scratch image runs this command: plx-init's share of Polyaxon's commands, and
/// busybox's applets on paths that exist there (not the tools plugin's binaries).
fn runnable(command: &[String]) -> bool {
    let program = command[0].rsplit('/').next().unwrap_or(&command[0]);
    match program {
        "polyaxon" => plx_connections::runs_itself(&command[1..]),
        // The tools plugin copies binaries the image does not carry.
        "cp" => !command
            .iter()
            .skip(1)
            .any(|word| word.starts_with("/usr/") || word.starts_with("/etc/polyaxon")),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scratch_image_is_the_scratch_image() {
        for image in [
            "plx-init",
            "plx-init:0.1.0",
            "reg.example.com:5000/team/plx-init:2.18.0",
            "plx-init@sha256:ab",
        ] {
            assert!(is_scratch_image(image), "{image}");
        }
        for image in [
            "plx-init-polyaxon:2.18.0",
            "polyaxon/polyaxon-init:2.18.0",
            "reg/plx-initx",
        ] {
            assert!(!is_scratch_image(image), "{image}");
        }
    }
}
