//! What the webhook checks in an object: the catalogs it carries (with plx-connections' own
//! rules and codes) and, through [`Keys`], whether the Secrets and ConfigMaps they name exist
//! and hold the keys they need.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use plx_connections::{Catalog, Connection, Diagnostic, Kind, Severity};
use serde_json::{Value, json};

/// An object the webhook reviews, read into its Kubernetes type (k8s-openapi's), as kube-rs's
/// admission examples read theirs.
#[derive(Debug, Clone)]
pub enum Object {
    /// A ConfigMap: Polyaxon's agent reads its catalog from one.
    ConfigMap(ConfigMap),
    /// A Secret: or from one.
    Secret(Secret),
    /// A Pod: a run's containers carry its catalog, its init containers the commands (boxed:
    /// a Pod is five times a ConfigMap's size).
    Pod(Box<Pod>),
}

impl Object {
    /// `object` as the `kind` the review says it is; None for a kind the webhook does not
    /// review, an error naming the kind for a body that does not read as one.
    pub fn read(kind: &str, object: Value) -> Option<Result<Object, String>> {
        let read = match kind {
            "ConfigMap" => serde_json::from_value(object).map(Object::ConfigMap),
            "Secret" => serde_json::from_value(object).map(Object::Secret),
            "Pod" => serde_json::from_value(object).map(|pod| Object::Pod(Box::new(pod))),
            _ => return None,
        };
        Some(read.map_err(|error| format!("the object is not a valid {kind}: {error}")))
    }
}

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

/// The problems of `object`; `None` when it carries no catalog and is none of our business.
pub fn review(object: &Object, cross: Option<&CrossCheck<'_>>) -> Option<Vec<Problem>> {
    match object {
        Object::ConfigMap(configmap) => carried(
            configmap
                .data
                .iter()
                .flatten()
                .map(|(key, value)| (key.clone(), Some(Value::String(value.clone())))),
            cross,
        ),
        // The API server has decoded `data` from base64 already; `stringData` goes over it.
        Object::Secret(secret) => {
            let mut data: Vec<(String, Option<Value>)> = secret
                .data
                .iter()
                .flatten()
                .map(|(key, bytes)| {
                    let text = String::from_utf8(bytes.0.clone()).ok().map(Value::String);
                    (key.clone(), text)
                })
                .collect();
            for (key, value) in secret.string_data.iter().flatten() {
                data.retain(|(known, _)| known != key);
                data.push((key.clone(), Some(Value::String(value.clone()))));
            }
            carried(data, cross)
        }
        Object::Pod(pod) => pod_catalogs(pod, cross),
    }
}

/// The catalog a ConfigMap's or Secret's data carries, read as `plx-init validate` reads it
/// (plx-connections' `catalog_in`), and the Secrets and ConfigMaps its connections name.
fn carried(
    data: impl IntoIterator<Item = (String, Option<Value>)>,
    cross: Option<&CrossCheck<'_>>,
) -> Option<Vec<Problem>> {
    let report = plx_connections::catalog_in(data, &[])?;
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

/// The catalogs a Pod's containers carry in `POLYAXON_CONNECTIONS_CATALOG`, and the
/// connections its init commands name; None when no container carries one.
fn pod_catalogs(pod: &Pod, cross: Option<&CrossCheck<'_>>) -> Option<Vec<Problem>> {
    let spec = pod.spec.as_ref()?;
    let mut problems = Vec::new();
    let mut found = false;
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let at = format!("/spec/{list}/{index}");
            let Some((env_index, text)) = container
                .env
                .iter()
                .flatten()
                .enumerate()
                .find(|(_, var)| var.name == plx_connections::CONNECTIONS_CATALOG)
                .and_then(|(env_index, var)| Some((env_index, var.value.as_deref()?)))
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

/// A container's command and args, in order.
fn words(container: &Container) -> impl Iterator<Item = &str> {
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(String::as_str)
}

/// The connections an init container's command names: plx-init's `--connection NAME` and
/// Polyaxon's `--connection-name=NAME`, also inside a `sh -c` script.
fn named_connections(container: &Container) -> BTreeSet<String> {
    let words: Vec<String> = words(container)
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
pub fn scratch_image_commands(pod: &Pod, strict: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let init_containers = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.init_containers.as_deref())
        .unwrap_or_default();
    for (index, container) in init_containers.iter().enumerate() {
        if !container.image.as_deref().is_some_and(is_scratch_image) {
            continue;
        }
        let name = &container.name;
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
fn unrunnable(container: &Container) -> Vec<String> {
    commands(container)
        .into_iter()
        .filter(|command| !runnable(command))
        .map(|command| command.join(" "))
        .collect()
}

/// The commands an init container runs, each as its words: those of its `sh -c` script, or its
/// `polyaxon` command line. plx-init itself (the image's entrypoint, or named) and a user's own
/// command are none of these.
pub fn commands(container: &Container) -> Vec<Vec<String>> {
    let words: Vec<&str> = words(container).collect();
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
