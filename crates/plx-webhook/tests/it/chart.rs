//! The Helm chart through real Helm v4 code (helm-python-sdk, or a `helm` binary on PATH): lint
//! and render every scenario under `ci/`, parse each manifest into k8s-openapi types (an unknown
//! field fails), check that the pieces point at each other, hold values.schema.json to the
//! conformance cases, and run what the chart renders: the webhook with its rendered arguments
//! and certificate, and each `helm test` pod against a real S3 server.

use crate::support;

mod runs;
mod values;
mod wiring;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use k8s_openapi::{
    api::{
        admissionregistration::v1::ValidatingWebhookConfiguration,
        apps::v1::Deployment,
        core::v1::{ConfigMap, Pod, PodSpec, Secret, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

const NAMESPACE: &str = "polyaxon";
const RELEASE: &str = "plx-connections";
const SERVICE: &str = "plx-connections-webhook";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/plx-connections")
}

/// Real Helm: a `helm` binary on PATH, else helm-python-sdk from `PLX_HELM_PYTHON` or the tools
/// venv `cargo xtask test` makes.
enum Helm {
    Binary,
    Python(PathBuf),
}

impl Helm {
    fn find() -> Helm {
        if Command::new("helm")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            return Helm::Binary;
        }
        let python = plx_testkit::helm_python();
        Helm::Python(python)
    }

    /// Runs requests (see plx-testkit's helm.py) and returns one answer each.
    fn run(&self, requests: &[Value]) -> Vec<Value> {
        match self {
            Helm::Python(python) => {
                let mut child = Command::new(python)
                    .arg(plx_testkit::helm_harness())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("python runs");
                let input = serde_json::to_vec(requests).expect("json");
                std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input)
                    .expect("requests written");
                let output = child.wait_with_output().expect("helm.py ends");
                assert!(
                    output.status.success(),
                    "helm.py failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                serde_json::from_slice(&output.stdout).expect("helm.py answers JSON")
            }
            Helm::Binary => requests.iter().map(binary).collect(),
        }
    }

    fn one(&self, request: Value) -> Value {
        self.run(&[request]).remove(0)
    }
}

/// The same requests through the helm CLI.
fn binary(request: &Value) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.json");
    std::fs::write(&values, request["values"].to_string()).expect("values written");
    let chart = request["chart"].as_str().unwrap_or_default();
    let namespace = request["namespace"].as_str().unwrap_or("default");
    let mut command = Command::new("helm");
    match request["op"].as_str() {
        Some("lint") => command.args(["lint", "--strict", chart, "-n", namespace]),
        Some("render" | "validate") => command.args([
            "template",
            request["name"].as_str().unwrap_or("release"),
            chart,
            "-n",
            namespace,
        ]),
        _ => return json!({"helm": "binary"}),
    };
    let output = command.arg("-f").arg(&values).output().expect("helm runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return json!({"error": format!("{text}{}", String::from_utf8_lossy(&output.stderr))});
    }
    match request["op"].as_str() {
        Some("lint") => json!({"messages": [], "errors": []}),
        Some("validate") => json!({}),
        _ => json!({"manifests": {"all.yaml": text}}),
    }
}

fn render_request(values: &Value) -> Value {
    json!({"op": "render", "chart": chart_dir(), "values": values, "name": RELEASE, "namespace": NAMESPACE})
}

fn scenarios() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("ci/ exists")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the scenarios under ci/ are missing");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let values: Value = serde_yaml::from_str(&text).expect("YAML");
            (
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                values,
            )
        })
        .collect()
}

/// Everything a render made, by kind and name, each object parsed into its type.
#[derive(Default)]
struct Rendered {
    objects: Vec<Value>,
    notes: String,
}

impl Rendered {
    fn of(answer: &Value) -> Result<Rendered, String> {
        if let Some(error) = answer.get("error") {
            return Err(error.as_str().unwrap_or_default().to_owned());
        }
        let mut rendered = Rendered::default();
        for (template, text) in answer["manifests"].as_object().into_iter().flatten() {
            let text = text.as_str().unwrap_or_default();
            if template.ends_with("NOTES.txt") {
                rendered.notes = text.to_owned();
                continue;
            }
            for document in serde_yaml::Deserializer::from_str(text) {
                let value = Value::deserialize(document)
                    .map_err(|error| format!("{template}: not YAML: {error}"))?;
                if value.is_null() {
                    continue;
                }
                check_type(&value).map_err(|error| format!("{template}: {error}"))?;
                rendered.objects.push(value);
            }
        }
        Ok(rendered)
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn get<T: DeserializeOwned>(&self, kind: &str) -> T {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "one {kind} expected, found {}", found.len());
        serde_json::from_value(found[0].clone()).expect("parsed before")
    }
}

/// Deserializes into `T` and fails on any field `T` does not know (serde would drop it).
fn strict<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let typed = serde_ignored::deserialize(value.clone(), |path| unknown.push(path.to_string()))
        .map_err(|error| error.to_string())?;
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(format!("unknown fields: {}", unknown.join(", ")))
    }
}

/// cert-manager's types, as far as the chart uses them (k8s-openapi has only the core API).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct CertManagerObject {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: CertManagerSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct CertManagerSpec {
    // Issuer
    self_signed: Option<BTreeMap<String, Value>>,
    ca: Option<CaIssuer>,
    // Certificate
    secret_name: Option<String>,
    #[serde(rename = "isCA")]
    is_ca: Option<bool>,
    common_name: Option<String>,
    duration: Option<String>,
    renew_before: Option<String>,
    dns_names: Option<Vec<String>>,
    private_key: Option<PrivateKey>,
    issuer_ref: Option<IssuerRef>,
    secret_template: Option<SecretTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct CaIssuer {
    secret_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct PrivateKey {
    algorithm: Option<String>,
    size: Option<u32>,
    rotation_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct IssuerRef {
    name: String,
    kind: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "read only by serde, which refuses unknown fields: they are there to be checked"
)]
struct SecretTemplate {
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

fn check_type(value: &Value) -> Result<(), String> {
    let kind = value["kind"].as_str().unwrap_or_default();
    let api = value["apiVersion"].as_str().unwrap_or_default();
    match (api, kind) {
        ("v1", "ConfigMap") => strict::<ConfigMap>(value).map(drop),
        ("v1", "Secret") => strict::<Secret>(value).map(drop),
        ("v1", "Service") => strict::<Service>(value).map(drop),
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(value).map(drop),
        ("v1", "Pod") => strict::<Pod>(value).map(drop),
        ("apps/v1", "Deployment") => strict::<Deployment>(value).map(drop),
        ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(value).map(drop),
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(value).map(drop),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(value).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(value).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<ClusterRoleBinding>(value).map(drop)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            strict::<ValidatingWebhookConfiguration>(value).map(drop)
        }
        ("cert-manager.io/v1", "Issuer" | "Certificate") => {
            serde_json::from_value::<CertManagerObject>(value.clone())
                .map(drop)
                .map_err(|error| error.to_string())
        }
        _ => Err(format!(
            "{api} {kind} is not a kind the chart should render"
        )),
    }
    .map_err(|error| format!("{api} {kind} {}: {error}", value["metadata"]["name"]))
}

/// Whether a label selector selects these labels (matchLabels and the four operators).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let by_expression = selector.match_expressions.iter().flatten().all(|rule| {
        let value = labels.get(&rule.key);
        let values = rule.values.clone().unwrap_or_default();
        match rule.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown operator {other}"),
        }
    });
    by_label && by_expression
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn restricted(spec: &PodSpec, what: &str) {
    let pod = spec
        .security_context
        .as_ref()
        .expect("a pod security context");
    assert_eq!(pod.run_as_non_root, Some(true), "{what}: runAsNonRoot");
    for container in &spec.containers {
        let context = container
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: {} has no security context", container.name));
        assert_eq!(context.allow_privilege_escalation, Some(false), "{what}");
        assert_eq!(context.read_only_root_filesystem, Some(true), "{what}");
        assert_eq!(
            context.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()]),
            "{what}"
        );
        assert!(container.resources.is_some(), "{what}: resources");
    }
}

#[test]
fn chart_and_crates_versions_agree() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("YAML");
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn lint_is_clean_for_every_scenario() {
    let helm = Helm::find();
    let scenarios = scenarios();
    let requests: Vec<Value> = scenarios
        .iter()
        .map(|(_, values)| json!({"op": "lint", "chart": chart_dir(), "values": values, "namespace": NAMESPACE}))
        .collect();
    for ((name, _), answer) in scenarios.iter().zip(helm.run(&requests)) {
        assert!(answer.get("error").is_none(), "{name}: {answer}");
        assert_eq!(answer["errors"], json!([]), "{name}");
        // Severity 2 and up are warnings and errors; 1 is information (e.g. "icon is recommended").
        let findings: Vec<&Value> = answer["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .collect();
        assert!(findings.is_empty(), "{name}: {findings:?}");
    }
}
