//! The Helm chart through real Helm v4 code (helm-python-sdk, or a `helm` binary on PATH): lint
//! and render every scenario under `ci/`, parse each manifest into k8s-openapi types (an unknown
//! field fails), check that the pieces point at each other, hold values.schema.json to the
//! conformance cases, and run what the chart renders: the webhook with its rendered arguments
//! and certificate, and each `helm test` pod against a real S3 server.

use crate::support;

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
        let python = std::env::var_os("PLX_HELM_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| plx_testkit::workspace_root().join("target/plx-tools/bin/python"));
        assert!(
            python.exists(),
            "{} is missing: run the tests with `cargo xtask test` (or `cargo xtask chart`), which installs helm-python-sdk",
            python.display()
        );
        Helm::Python(python)
    }

    /// Runs requests (see tests/chart/helm.py) and returns one answer each.
    fn run(&self, requests: &[Value]) -> Vec<Value> {
        match self {
            Helm::Python(python) => {
                let mut child = Command::new(python)
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart/helm.py"))
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
#[allow(dead_code)]
struct CertManagerObject {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: CertManagerSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
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
#[allow(dead_code)]
struct CaIssuer {
    secret_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct PrivateKey {
    algorithm: Option<String>,
    size: Option<u32>,
    rotation_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IssuerRef {
    name: String,
    kind: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
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

#[test]
fn every_scenario_renders_known_objects_wired_together() {
    let helm = Helm::find();
    let scenarios = scenarios();
    let requests: Vec<Value> = scenarios.iter().map(|(_, v)| render_request(v)).collect();
    for ((name, values), answer) in scenarios.iter().zip(helm.run(&requests)) {
        let rendered = Rendered::of(&answer).unwrap_or_else(|error| panic!("{name}: {error}"));
        wiring(name, values, &rendered);
    }
}

/// The namespaces a scenario's webhook reviews: `webhook.namespaces`, else the release namespace
/// and Polyaxon's `agent.additionalNamespaces`.
fn reviewed_namespaces(values: &Value) -> Vec<String> {
    let strings = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    let named = strings(&values["webhook"]["namespaces"]);
    if !named.is_empty() {
        return named.into_iter().filter(|n| n != "*").collect();
    }
    let mut all = vec![NAMESPACE.to_owned()];
    for ns in strings(&values["agent"]["additionalNamespaces"]) {
        if !all.contains(&ns) {
            all.push(ns);
        }
    }
    all
}

fn wiring(name: &str, values: &Value, rendered: &Rendered) {
    let webhook = &values["webhook"];
    assert!(
        rendered
            .notes
            .contains("is installed in namespace polyaxon"),
        "{name}: NOTES"
    );
    let config_map: ConfigMap = rendered.get("ConfigMap");
    catalog_passes_the_webhook(name, &config_map);
    if !rendered.all("Pod").is_empty() {
        for pod in rendered.all("Pod") {
            let pod: Pod = serde_json::from_value(pod.clone()).expect("typed");
            restricted(pod.spec.as_ref().expect("spec"), name);
            let review =
                plx_webhook::check::review("Pod", &serde_json::to_value(&pod).expect("json"), None)
                    .expect("a test pod carries a catalog");
            assert!(
                review.is_empty(),
                "{name}: the test pod's catalog: {review:?}"
            );
        }
    }
    if webhook["enabled"] == false {
        assert!(rendered.all("Deployment").is_empty(), "{name}");
        assert!(
            rendered.all("ValidatingWebhookConfiguration").is_empty(),
            "{name}"
        );
        return;
    }
    let service: Service = rendered.get("Service");
    let deployment: Deployment = rendered.get("Deployment");
    let configuration: ValidatingWebhookConfiguration =
        rendered.get("ValidatingWebhookConfiguration");
    assert_eq!(service.metadata.name.as_deref(), Some(SERVICE));
    let spec = deployment.spec.as_ref().expect("spec");
    let template = spec.template.spec.as_ref().expect("pod spec");
    restricted(template, name);
    // `imagePullSecrets` as Polyaxon's values write it (plain names) or as Kubernetes does
    // (`{name}`): either way the pods get references.
    let pull_secrets: Vec<String> = values["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|secret| {
            secret
                .as_str()
                .unwrap_or_else(|| secret["name"].as_str().unwrap_or_default())
                .to_owned()
        })
        .collect();
    let rendered_secrets: Vec<String> = template
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|reference| reference.name.clone())
        .collect();
    assert_eq!(rendered_secrets, pull_secrets, "{name}: imagePullSecrets");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    // Polyaxon's global scheduling keys place the webhook beside Polyaxon, unless the webhook
    // sets its own; Polyaxon's affinity (which packs its core pods together) is not taken.
    let pick = |key: &str| {
        let own = &webhook[key];
        if own.is_null() || own == &json!({}) || own == &json!([]) || own == &json!("") {
            values[key].clone()
        } else {
            own.clone()
        }
    };
    let node_selector = serde_json::to_value(&template.node_selector).expect("json");
    let selector_wanted = pick("nodeSelector");
    assert!(
        node_selector == selector_wanted
            || (node_selector.is_null()
                && selector_wanted.as_object().is_none_or(|m| m.is_empty())),
        "{name}: nodeSelector {node_selector} for {selector_wanted}"
    );
    let tolerations = serde_json::to_value(&template.tolerations).expect("json");
    let tolerations_wanted = pick("tolerations");
    assert!(
        tolerations == tolerations_wanted
            || (tolerations.is_null()
                && tolerations_wanted.as_array().is_none_or(|l| l.is_empty())),
        "{name}: tolerations {tolerations} for {tolerations_wanted}"
    );
    assert_eq!(
        template.priority_class_name.clone().unwrap_or_default(),
        pick("priorityClassName").as_str().unwrap_or_default(),
        "{name}: priorityClassName"
    );
    let pod_label_wanted = if webhook["podLabels"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        webhook["podLabels"].clone()
    } else {
        values["labels"].clone()
    };
    for (key, value) in pod_label_wanted.as_object().into_iter().flatten() {
        assert_eq!(
            pod_labels.get(key).map(String::as_str),
            value.as_str(),
            "{name}: pod label {key}"
        );
    }
    let affinity = serde_json::to_value(&template.affinity).expect("json");
    if webhook["affinity"].as_object().is_none_or(|m| m.is_empty()) {
        assert!(
            affinity["podAntiAffinity"].is_object() && affinity["podAffinity"].is_null(),
            "{name}: the replicas spread over nodes: {affinity}"
        );
    }
    // The Service selects the webhook's pods.
    let service_spec = service.spec.as_ref().expect("service spec");
    let selector = service_spec.selector.clone().unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "{name}"
    );
    let container = &template.containers[0];
    let args = container.args.clone().unwrap_or_default();
    let arg = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .map(str::to_owned)
    };
    let listen_port: i32 = arg("--addr")
        .and_then(|addr| addr.rsplit(':').next().and_then(|p| p.parse().ok()))
        .expect("--addr with a port");
    let named = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.container_port == listen_port)
        .expect("the port is declared");
    let timeout = webhook["timeoutSeconds"].as_i64().unwrap_or(5);
    let budget: f64 = arg("--budget")
        .and_then(|b| b.parse().ok())
        .expect("--budget");
    assert!(
        budget < timeout as f64,
        "{name}: the webhook must answer before the API server gives up"
    );
    assert_eq!(
        args.contains(&"--strict".to_owned()),
        webhook["strict"] == true,
        "{name}"
    );
    // The TLS volume is the Secret the configuration's CA vouches for.
    let tls_secret = template
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
        .expect("a TLS volume");
    assert_eq!(
        configuration.webhooks.as_ref().map(Vec::len),
        Some(2),
        "{name}"
    );
    for hook in configuration.webhooks.iter().flatten() {
        let target = hook
            .client_config
            .service
            .as_ref()
            .expect("a service reference");
        assert_eq!(target.name, SERVICE, "{name}");
        assert_eq!(target.namespace, NAMESPACE, "{name}");
        assert_eq!(target.path.as_deref(), Some("/validate"), "{name}");
        let port = service_spec
            .ports
            .iter()
            .flatten()
            .find(|p| Some(p.port) == target.port)
            .unwrap_or_else(|| panic!("{name}: the Service has no port {:?}", target.port));
        let target_port = port.target_port.as_ref().expect("targetPort");
        match target_port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(port_name) => {
                assert_eq!(Some(port_name), named.name.as_ref(), "{name}")
            }
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(number) => {
                assert_eq!(*number, listen_port, "{name}")
            }
        }
        assert_eq!(hook.admission_review_versions, vec!["v1".to_owned()]);
        assert_eq!(hook.side_effects, "None");
        assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(
            hook.failure_policy.as_deref(),
            Some(webhook["failurePolicy"].as_str().unwrap_or("Fail")),
            "{name}: the stated default is Fail"
        );
        assert_eq!(hook.timeout_seconds, Some(timeout as i32), "{name}");
        let namespaces = hook
            .namespace_selector
            .as_ref()
            .expect("a namespace selector");
        let objects = hook.object_selector.as_ref().expect("an object selector");
        let namespace = |n: &str| labels(&[("kubernetes.io/metadata.name", n)]);
        assert!(
            !selects(namespaces, &namespace("kube-system")),
            "{name}: kube-system is left out"
        );
        assert!(
            selects(namespaces, &namespace(NAMESPACE))
                || webhook["excludeNamespaces"].to_string().contains(NAMESPACE),
            "{name}"
        );
        for excluded in webhook["excludeNamespaces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                !selects(
                    namespaces,
                    &namespace(excluded.as_str().unwrap_or_default())
                ),
                "{name}"
            );
        }
        // By default only where Polyaxon runs: its release namespace and its own
        // `agent.additionalNamespaces`; `webhook.namespaces` names others, ["*"] all.
        let reviewed = reviewed_namespaces(values);
        for ns in &reviewed {
            assert!(
                selects(namespaces, &namespace(ns))
                    || webhook["excludeNamespaces"]
                        .to_string()
                        .contains(ns.as_str()),
                "{name}: {ns} is reviewed"
            );
        }
        let everywhere = webhook["namespaces"].to_string().contains("\"*\"");
        assert_eq!(
            selects(namespaces, &namespace("unrelated")),
            everywhere,
            "{name}: a namespace Polyaxon does not run in"
        );
        let mut opted_out = namespace("team-x");
        opted_out.insert("plx-connections.io/validation".into(), "disabled".into());
        assert!(
            !selects(namespaces, &opted_out),
            "{name}: the opt-out label"
        );
        // The webhook never reviews its own pods, so it can always come back.
        assert!(
            !selects(objects, &pod_labels),
            "{name}: {} selects the webhook's own pods",
            hook.name
        );
        let rules = hook.rules.clone().unwrap_or_default();
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        if hook.name.starts_with("catalogs.") {
            assert_eq!(resources, ["configmaps", "secrets"], "{name}");
            let catalog_labels = config_map.metadata.labels.clone().unwrap_or_default();
            assert!(
                selects(objects, &catalog_labels),
                "{name}: the catalog ConfigMap must be reviewed"
            );
            assert!(
                !selects(objects, &labels(&[("owner", "helm"), ("name", RELEASE)])),
                "{name}: Helm's release records"
            );
        } else {
            assert_eq!(resources, ["pods"], "{name}");
            assert!(
                selects(
                    objects,
                    &labels(&[("app.kubernetes.io/managed-by", "polyaxon")])
                ),
                "{name}: Polyaxon's run pods must be reviewed"
            );
        }
        // TLS: either the chart's CA, or cert-manager's injection from the Certificate whose
        // Secret the pods mount.
        if webhook["tls"]["certManager"]["enabled"] == true {
            let injected = configuration
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
                .expect("cert-manager injects the CA");
            let certificate = rendered
                .all("Certificate")
                .into_iter()
                .find(|c| c["spec"]["secretName"] == tls_secret.as_str())
                .expect("a Certificate for the mounted Secret");
            assert_eq!(
                injected,
                &format!(
                    "{NAMESPACE}/{}",
                    certificate["metadata"]["name"].as_str().unwrap_or_default()
                )
            );
            assert!(
                certificate["spec"]["dnsNames"]
                    .to_string()
                    .contains(&format!("{SERVICE}.{NAMESPACE}.svc"))
            );
            assert!(
                rendered.all("Secret").is_empty(),
                "{name}: cert-manager makes the Secret"
            );
        } else {
            let secret: Secret = rendered.get("Secret");
            assert_eq!(secret.metadata.name.as_deref(), Some(tls_secret.as_str()));
            let ca = &secret.data.as_ref().expect("data")["ca.crt"];
            assert_eq!(
                hook.client_config.ca_bundle.as_ref(),
                Some(ca),
                "{name}: caBundle is the chart's CA"
            );
            assert!(
                !selects(objects, &secret.metadata.labels.clone().unwrap_or_default()),
                "{name}: the TLS Secret"
            );
        }
    }
    // RBAC: list and watch Secrets and ConfigMaps, nothing else, only where the webhook watches.
    let watched: Vec<String> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--namespace="))
        .map(str::to_owned)
        .collect();
    let cross = &webhook["crossChecks"];
    let roles = rendered.all("Role");
    let cluster_roles = rendered.all("ClusterRole");
    if cross["enabled"] == false {
        assert!(args.contains(&"--no-cluster".to_owned()), "{name}");
        assert!(
            roles.is_empty() && cluster_roles.is_empty(),
            "{name}: no API access"
        );
        assert_eq!(
            template.automount_service_account_token,
            Some(false),
            "{name}"
        );
    } else if cross["allNamespaces"] == true {
        assert!(watched.is_empty(), "{name}");
        assert!(roles.is_empty() && cluster_roles.len() == 1, "{name}");
    } else {
        let expected: Vec<String> = match cross["namespaces"].as_array() {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ if webhook["namespaces"].to_string().contains("\"*\"") => vec![NAMESPACE.to_owned()],
            _ => reviewed_namespaces(values),
        };
        assert_eq!(watched, expected, "{name}");
        let role_namespaces: Vec<&str> = roles
            .iter()
            .filter_map(|r| r["metadata"]["namespace"].as_str())
            .collect();
        assert_eq!(
            role_namespaces, expected,
            "{name}: a Role in each watched namespace"
        );
        assert!(cluster_roles.is_empty(), "{name}");
        assert_eq!(rendered.all("RoleBinding").len(), expected.len(), "{name}");
    }
    for role in roles.iter().chain(&cluster_roles) {
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["list", "watch"]}]),
            "{name}: least privilege"
        );
    }
    let replicas = webhook["replicas"].as_i64().unwrap_or(2);
    assert_eq!(spec.replicas, Some(replicas as i32), "{name}");
    assert_eq!(
        rendered.all("PodDisruptionBudget").len(),
        usize::from(replicas > 1),
        "{name}"
    );
    assert!(
        template
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some(),
        "{name}: spread over nodes"
    );
}

fn catalog_passes_the_webhook(name: &str, config_map: &ConfigMap) {
    let object = serde_json::to_value(config_map).expect("json");
    let body = support::admission_review("chart", &object, "CREATE", false).to_string();
    let (review, allowed) = plx_webhook::answer(
        body.as_bytes(),
        plx_webhook::Policy {
            keys: None,
            strict: false,
        },
    )
    .unwrap_or_else(|reject| panic!("{name}: {reject}"));
    let review = serde_json::to_value(&review).expect("json");
    assert!(allowed, "{name}: the rendered catalog is refused: {review}");
}

/// The model's conformance cases that a values file can hold, as values files: (case id, case,
/// values). A connection or a list of them becomes `connections:`.
fn values_cases() -> Vec<(String, Value, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/model");
    let mut cases = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                cases.push(path);
            }
        }
    }
    cases.sort();
    let mut found = Vec::new();
    for path in &cases {
        let case: Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).expect("readable")).expect("YAML");
        if case.get("catalog").is_some() {
            continue;
        }
        let Some(document) = case.get("document") else {
            continue;
        };
        let values = match plx_connections::validate_value(document, &[]).form {
            Some(plx_connections::Form::Connection) => json!({"connections": [document]}),
            Some(plx_connections::Form::ConnectionList) => json!({"connections": document}),
            Some(plx_connections::Form::Values) => document.clone(),
            _ => continue,
        };
        let id = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        found.push((id, case, values));
    }
    found
}

#[test]
fn the_render_refuses_duplicate_names_and_unknown_mounts_with_every_problem() {
    // The first install is checked before the webhook exists: validate.yaml refuses what only the
    // whole catalog shows (duplicate names, `mountConnections` naming no connection), with the
    // validator's paths and codes, and every valid values file renders.
    let helm = Helm::find();
    let mut checked = Vec::new();
    for (id, _, values) in values_cases() {
        let report = plx_connections::validate_value(&values, &[]);
        let errors: Vec<String> = report
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{}: {}", d.path, d.code))
            .collect();
        let render_time = |e: &String| {
            e.ends_with(": duplicate-name")
                || (e.starts_with("/mountConnections/") && e.ends_with(": unknown-connection"))
        };
        if errors.is_empty() || errors.iter().all(render_time) {
            checked.push((id, errors, values));
        }
    }
    assert!(
        checked
            .iter()
            .filter(|(_, errors, _)| !errors.is_empty())
            .count()
            >= 3,
        "the duplicate-name and mountConnections cases are missing"
    );
    let requests: Vec<Value> = checked.iter().map(|(_, _, v)| render_request(v)).collect();
    let mut wrong = Vec::new();
    for ((id, errors, _), answer) in checked.iter().zip(helm.run(&requests)) {
        let message = answer["error"].as_str().unwrap_or_default();
        match (errors.is_empty(), answer.get("error").is_some()) {
            (true, false) => {}
            (false, true) if errors.iter().all(|e| message.contains(e.as_str())) => {}
            _ => wrong.push(format!("{id}: expected {errors:?}, Helm said {answer}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn values_schema_agrees_with_the_conformance_cases() {
    let helm = Helm::find();
    let mut checked = Vec::new();
    for (id, case, values) in values_cases() {
        if case.get("cross_field").is_some() {
            continue;
        }
        // A connection wrapped into a values file is read by Polyaxon's agent, which is stricter
        // than a bare connection's reader (a list of `{name, value}` objects in `env`): the
        // case's verdict holds only where the validator gives the wrapped file the same one.
        let valid =
            case["valid"] == true && !plx_connections::validate_value(&values, &[]).has_errors();
        checked.push((id, valid, values));
    }
    assert!(
        checked.len() >= 50,
        "only {} cases are values-shaped",
        checked.len()
    );
    let requests: Vec<Value> = checked
        .iter()
        .map(|(_, _, values)| json!({"op": "validate", "chart": chart_dir(), "values": values}))
        .collect();
    let mut disagree = Vec::new();
    for ((id, valid, _), answer) in checked.iter().zip(helm.run(&requests)) {
        let accepted = answer.get("error").is_none();
        if accepted != *valid {
            disagree.push(format!(
                "{id}: the case is {}, Helm {} it: {}",
                if *valid { "valid" } else { "invalid" },
                if accepted { "accepts" } else { "refuses" },
                answer["error"]
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "values.schema.json disagrees with {} of {} cases:\n{}",
        disagree.len(),
        checked.len(),
        disagree.join("\n")
    );
}

#[test]
fn helm_refuses_malformed_values_with_the_field_path() {
    let helm = Helm::find();
    let answers = helm.run(&[
        render_request(&json!({"connections": [{"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "gs://bucket/path1"}, "secret": {"name": "s3-secret"}}]})),
        render_request(&json!({"webhook": {"replica": 2}})),
        render_request(&json!({"webhook": {"timeoutSeconds": 60}})),
        render_request(&json!({"artifactsStore": {"name": "store", "kind": "git", "schema": {"url": "https://github.com/org/repo"}}})),
    ]);
    let errors: Vec<String> = answers
        .iter()
        .map(|a| a["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        errors[0].contains("/connections/0/schema/bucket"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("replica"), "{}", errors[1]);
    assert!(errors[2].contains("timeoutSeconds"), "{}", errors[2]);
    assert!(errors[3].contains("/artifactsStore"), "{}", errors[3]);
    // Polyaxon's own initializer image as `init` (an unchanged Polyaxon values file) cannot run
    // the checks: refused with the fix, and accepted once tests.image names plx-init.
    let answers = helm.run(&[
        render_request(&json!({"init": {"image": "polyaxon/polyaxon-init", "imageTag": "2.2.0"}})),
        render_request(&json!({"init": {"image": "polyaxon/polyaxon-init", "imageTag": "2.2.0"}, "tests": {"image": "registry.example.com/plx-init:0.1.0"}})),
    ]);
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("set tests.image to the plx-init image"),
        "{}",
        answers[0]
    );
    let rendered = Rendered::of(&answers[1]).expect("renders");
    for pod in rendered.all("Pod") {
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            "registry.example.com/plx-init:0.1.0"
        );
    }
    // A release in kube-system is refused by the chart itself, with the fix.
    let mut request = render_request(&json!({}));
    request["namespace"] = json!("kube-system");
    let answer = helm.one(request);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("install into the namespace of Polyaxon"),
        "{answer}"
    );
}

#[test]
fn a_duplicate_name_is_refused_by_helm_and_by_the_webhook_in_the_same_words() {
    // The seed page's second example: valid field by field, so values.schema.json lets it
    // through; validate.yaml refuses it at render (the first install too, before the webhook
    // exists), and the webhook refuses the same catalog written by hand into the ConfigMap.
    let duplicate = json!([
        {"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "s3://bucket/path1"}, "secret": {"name": "s3-secret"}},
        {"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "s3://bucket/path2"}, "secret": {"name": "s3-secret"}},
    ]);
    let helm = Helm::find();
    let refused = helm.one(render_request(&json!({"connections": duplicate})));
    let line = "/connections/1/name: duplicate-name: a connection named `s3-dataset1` is already defined at /connections/0";
    assert!(
        refused["error"].as_str().unwrap_or_default().contains(line),
        "{refused}"
    );
    let mut fixed = duplicate.clone();
    fixed[1]["name"] = json!("s3-dataset2");
    let rendered =
        Rendered::of(&helm.one(render_request(&json!({"connections": fixed})))).expect("renders");
    let config_map: ConfigMap = rendered.get("ConfigMap");
    let mut object = serde_json::to_value(&config_map).expect("json");
    object["data"][plx_connections::AGENT_CONNECTIONS] = json!(duplicate.to_string());
    let body = support::admission_review("dup", &object, "UPDATE", false).to_string();
    let (review, allowed) = plx_webhook::answer(
        body.as_bytes(),
        plx_webhook::Policy {
            keys: None,
            strict: false,
        },
    )
    .expect("a review");
    let review = serde_json::to_value(&review).expect("json");
    assert!(!allowed);
    assert_eq!(
        review["response"]["status"]["details"]["causes"][0]["reason"], "duplicate-name",
        "{review}"
    );
    assert_eq!(
        review["response"]["status"]["details"]["causes"][0]["field"],
        "data.POLYAXON_AGENT_CONNECTIONS[1].name",
        "{review}"
    );
    let message = review["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("duplicate-name: a connection named `s3-dataset1` is already defined"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_webhook_runs_and_its_ca_vouches_for_the_service_name() -> anyhow::Result<()> {
    // Crossing checks off: the webhook then needs no API server, so it runs here exactly as
    // the Deployment says, with the Secret the chart made.
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(
        chart_dir().join("ci/no-cross-checks-values.yaml"),
    )?)?;
    let rendered =
        Rendered::of(&Helm::find().one(render_request(&values))).map_err(anyhow::Error::msg)?;
    let deployment: Deployment = rendered.get("Deployment");
    let secret: Secret = rendered.get("Secret");
    let configuration: ValidatingWebhookConfiguration =
        rendered.get("ValidatingWebhookConfiguration");
    let config_map: ConfigMap = rendered.get("ConfigMap");
    let data = secret.data.clone().unwrap_or_default();
    let dir = tempfile::tempdir()?;
    for key in ["tls.crt", "tls.key"] {
        std::fs::write(dir.path().join(key), &data[key].0)?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let template = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let mount = template.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "tls")
        .map(|m| m.mount_path.clone())
        .expect("the TLS mount");
    // The pod's paths and address, mapped onto this machine; every other argument as rendered.
    let args: Vec<String> = template.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--addr=") {
                format!("--addr=127.0.0.1:{port}")
            } else {
                arg.replacen(
                    &format!("={mount}/"),
                    &format!("={}/", dir.path().display()),
                    1,
                )
            }
        })
        .collect();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_plx-webhook"))
        .args(&args)
        .kill_on_drop(true)
        .stderr(Stdio::piped())
        .spawn()?;
    let ca_bundle = configuration.webhooks.as_ref().expect("webhooks")[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle");
    let object = serde_json::to_value(&config_map)?;
    let body = support::admission_review("rendered", &object, "CREATE", false).to_string();
    let mut answer = Err(anyhow::anyhow!("not tried"));
    for _ in 0..100 {
        answer = post_as_the_api_server(
            port,
            &ca_bundle.0,
            &format!("{SERVICE}.{NAMESPACE}.svc"),
            &body,
        )
        .await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            server.start_kill()?;
            let output = server.wait_with_output().await?;
            panic!(
                "the webhook does not answer over TLS the API server trusts: {error:#}\nargs: {args:?}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    // The same CA does not vouch for another name: the API server would refuse it.
    assert!(
        post_as_the_api_server(port, &ca_bundle.0, "other.polyaxon.svc", &body)
            .await
            .is_err()
    );
    server.start_kill()?;
    Ok(())
}

/// POSTs `body` to /validate over TLS trusting only `ca_pem`, checking the certificate against
/// `server_name` as the API server checks the Service's DNS name.
async fn post_as_the_api_server(
    port: u16,
    ca_pem: &[u8],
    server_name: &str,
    body: &str,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = support::tls_connect(ca_pem, port, server_name).await?;
    let request = format!(
        "POST /validate?timeout=5s HTTP/1.1\r\nHost: {server_name}:443\r\nContent-Type: application/json\r\nAccept: application/json, */*\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_test_pods_tell_which_connections_work() -> anyhow::Result<()> {
    // Each rendered test pod runs as the kubelet would run it: the plx-init image, its args,
    // its env with secretKeyRef resolved from the Secret, on the S3 server's network.
    let server = plx_testkit::S3Server::start().await?;
    server.create_bucket("datasets").await?;
    server
        .put("datasets", "v1/train/a.csv", b"a,b\n".to_vec())
        .await?;
    let endpoint = server.bridge_endpoint().await?;
    let env = json!({"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": server.region});
    let values = json!({"connections": [
        {"name": "s3-works", "kind": "s3", "schema": {"bucket": "s3://datasets/v1"},
         "secret": {"name": "s3-secret", "items": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}, "env": env},
        {"name": "s3-missing-bucket", "kind": "s3", "schema": {"bucket": "s3://no-such-bucket/v1"},
         "secret": {"name": "s3-secret", "items": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}, "env": env},
        {"name": "s3-wrong-key", "kind": "s3", "schema": {"bucket": "s3://datasets/v1"},
         "secret": {"name": "wrong-secret"}, "env": env},
    ]});
    let secrets: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::from([
        (
            "s3-secret",
            BTreeMap::from([
                ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
                ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
            ]),
        ),
        (
            "wrong-secret",
            BTreeMap::from([
                ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
                ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
            ]),
        ),
    ]);
    let rendered =
        Rendered::of(&Helm::find().one(render_request(&values))).map_err(anyhow::Error::msg)?;
    let mut verdicts = BTreeMap::new();
    for pod in rendered.all("Pod") {
        let pod: Pod = serde_json::from_value(pod.clone())?;
        let spec = pod.spec.expect("spec");
        let container = &spec.containers[0];
        let args = container.args.clone().unwrap_or_default();
        if args[1] == "default-artifacts-store" {
            continue; // a host path of a node; nothing to mount here
        }
        let mut command = Command::new("docker");
        command
            .args([
                "run",
                "--rm",
                "--read-only",
                "--network",
                "bridge",
                "--user",
                "65534:65534",
            ])
            .args([
                "--label",
                plx_testkit::LABEL,
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
            ]);
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let key = from.secret_key_ref.as_ref().expect("a secretKeyRef");
                    secrets[key.name.as_str()][key.key.as_str()].to_owned()
                }
                _ => String::new(),
            };
            command.arg("-e").arg(format!("{}={value}", var.name));
        }
        for source in container.env_from.iter().flatten() {
            let name = source
                .secret_ref
                .as_ref()
                .map(|s| s.name.clone())
                .expect("a secretRef");
            for (key, value) in &secrets[name.as_str()] {
                command.arg("-e").arg(format!("{key}={value}"));
            }
        }
        let image = container.image.clone().expect("an image");
        let output = command.arg(image).args(&args).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        verdicts.insert(args[1].clone(), (output.status.code(), stdout));
    }
    let (code, out) = &verdicts["s3-works"];
    assert_eq!(*code, Some(0), "{out}");
    assert!(
        out.contains("ok: s3://datasets/v1 is reachable and holds 1 objects"),
        "{out}"
    );
    let (code, out) = &verdicts["s3-missing-bucket"];
    assert_eq!(*code, Some(1), "{out}");
    assert!(out.contains("no-such-bucket"), "{out}");
    let (code, out) = &verdicts["s3-wrong-key"];
    assert_eq!(*code, Some(1), "{out}");
    assert!(
        out.contains("failed: access to bucket `datasets` denied (403)"),
        "{out}"
    );
    assert!(
        !out.contains("not-the-secret"),
        "a secret value in the output: {out}"
    );
    assert_eq!(verdicts.len(), 3);
    Ok(())
}

/// The rendered configuration's matchConditions, evaluated with a CEL interpreter (cel-rust) on
/// objects as the API server passes them (`object`): only objects carrying Polyaxon's catalog
/// keys, and run pods with init containers, are sent, so a webhook that is down blocks nothing
/// else; with `matchConditions: false` there are none.
#[test]
fn match_conditions_send_only_objects_that_carry_a_catalog() {
    let values = json!({"webhook": {"crossChecks": {"enabled": false}}});
    let helm = Helm::find();
    let rendered = Rendered::of(&helm.one(render_request(&values))).expect("renders");
    let configuration = rendered.all("ValidatingWebhookConfiguration")[0].clone();
    let sent = |hook: &str, object: &Value| -> bool {
        let hook = configuration["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .find(|webhook| {
                webhook["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(hook))
            })
            .expect("the hook");
        let conditions = hook["matchConditions"].as_array().expect("matchConditions");
        assert!(!conditions.is_empty());
        // The API server sends a request only when every condition is true.
        conditions.iter().all(|condition| {
            let expression = condition["expression"].as_str().expect("an expression");
            let program = cel::Program::compile(expression)
                .unwrap_or_else(|error| panic!("{expression}: {error}"));
            let mut context = cel::Context::default();
            context.add_variable("object", object).expect("a variable");
            match program.execute(&context) {
                Ok(cel::Value::Bool(verdict)) => verdict,
                other => panic!("{expression} on {object}: {other:?}"),
            }
        })
    };
    let connections = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://b"}}]"#;
    let config_map = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data});
    assert!(sent(
        "catalogs.",
        &config_map(json!({"POLYAXON_AGENT_CONNECTIONS": connections}))
    ));
    assert!(sent(
        "catalogs.",
        &config_map(json!({"POLYAXON_AGENT_ARTIFACTS_STORE": "{}", "OTHER": "x"}))
    ));
    assert!(sent(
        "catalogs.",
        &config_map(json!({"POLYAXON_CONNECTIONS_CATALOG": "{}"}))
    ));
    assert!(!sent(
        "catalogs.",
        &config_map(json!({"POLYAXON_LOG_LEVEL": "INFO"}))
    ));
    assert!(!sent(
        "catalogs.",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "empty"}})
    ));
    let secret = |field: &str, data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, field: data});
    assert!(sent(
        "catalogs.",
        &secret("data", json!({"POLYAXON_AGENT_CONNECTIONS": "W10="}))
    ));
    assert!(sent(
        "catalogs.",
        &secret("stringData", json!({"POLYAXON_AGENT_CONNECTIONS": "[]"}))
    ));
    assert!(!sent(
        "catalogs.",
        &secret("data", json!({"tls.crt": "eA==", "tls.key": "eA=="}))
    ));
    // Helm's release record: a Secret with one `release` key.
    assert!(!sent(
        "catalogs.",
        &secret("data", json!({"release": "SDRzSQ=="}))
    ));
    let pod = |spec: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
    let main = json!([{"name": "main", "image": "python:3.11"}]);
    assert!(sent(
        "pods.",
        &pod(
            json!({"initContainers": [{"name": "polyaxon-init-auth", "image": "i"}], "containers": main})
        )
    ));
    assert!(!sent("pods.", &pod(json!({"containers": main}))));
    assert!(!sent(
        "pods.",
        &pod(json!({"initContainers": [], "containers": main}))
    ));
    // Off, for clusters before 1.30: no conditions rendered.
    let values = json!({"webhook": {"crossChecks": {"enabled": false}, "matchConditions": false, "failurePolicy": "Ignore"}});
    let rendered = Rendered::of(&helm.one(render_request(&values))).expect("renders");
    for hook in rendered.all("ValidatingWebhookConfiguration")[0]["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(hook.get("matchConditions").is_none(), "{hook}");
    }
}
