//! Every scenario under `ci/` rendered and its objects checked against each other: the webhook
//! configuration against the Service, the Deployment's arguments and certificate, the
//! selectors against Polyaxon's namespaces and the objects they must and must not send, the
//! RBAC against the watched namespaces, and Polyaxon's shared keys.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhook;

use super::*;

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

/// One rendered scenario: its values and what Helm made of them.
#[derive(Clone, Copy)]
struct Scenario<'a> {
    name: &'a str,
    values: &'a Value,
    webhook: &'a Value,
    rendered: &'a Rendered,
}

/// The webhook's rendered pieces that the checks hold against each other.
struct Webhook {
    service: Service,
    template: PodSpec,
    configuration: ValidatingWebhookConfiguration,
    config_map: ConfigMap,
    pod_labels: BTreeMap<String, String>,
    args: Vec<String>,
    /// The container port the webhook listens on, and its name.
    port: (i32, Option<String>),
    /// The Secret the pods mount for TLS.
    tls_secret: String,
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
    for pod in rendered.all("Pod") {
        let pod: Pod = serde_json::from_value(pod.clone()).expect("typed");
        restricted(pod.spec.as_ref().expect("spec"), name);
        let review = plx_webhook::check::review(&plx_webhook::Object::Pod(Box::new(pod)), None)
            .expect("a test pod carries a catalog");
        assert!(
            review.is_empty(),
            "{name}: the test pod's catalog: {review:?}"
        );
    }
    if webhook["enabled"] == false {
        assert!(rendered.all("Deployment").is_empty(), "{name}");
        assert!(
            rendered.all("ValidatingWebhookConfiguration").is_empty(),
            "{name}"
        );
        return;
    }
    let scenario = &Scenario {
        name,
        values,
        webhook,
        rendered,
    };
    let wired = &deployment(scenario, config_map);
    scheduling(scenario, wired);
    assert_eq!(
        wired.configuration.webhooks.as_ref().map(Vec::len),
        Some(2),
        "{name}"
    );
    for hook in wired.configuration.webhooks.iter().flatten() {
        hook_target(scenario, wired, hook);
        hook_selectors(scenario, wired, hook);
        hook_tls(scenario, wired, hook);
    }
    rbac(scenario, wired);
}

/// The Deployment: restricted, its pull secrets as Polyaxon's values name them, the Service on
/// its pods, its arguments within the configuration's timeout, its replicas spread and guarded.
fn deployment(scenario: &Scenario<'_>, config_map: ConfigMap) -> Webhook {
    let Scenario {
        name,
        values,
        webhook,
        rendered,
    } = *scenario;
    let service: Service = rendered.get("Service");
    let deployment: Deployment = rendered.get("Deployment");
    assert_eq!(service.metadata.name.as_deref(), Some(SERVICE));
    let spec = deployment.spec.as_ref().expect("spec");
    let template = spec.template.spec.clone().expect("pod spec");
    restricted(&template, name);
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
    // The Service selects the webhook's pods.
    let selector = service
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.clone())
        .unwrap_or_default();
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
    let port = (listen_port, named.name.clone());
    Webhook {
        service,
        template,
        configuration: rendered.get("ValidatingWebhookConfiguration"),
        config_map,
        pod_labels,
        port,
        args,
        tls_secret,
    }
}

/// Polyaxon's global scheduling keys place the webhook beside Polyaxon, unless the webhook sets
/// its own; Polyaxon's affinity (which packs its core pods together) is not taken.
fn scheduling(scenario: &Scenario<'_>, wired: &Webhook) {
    let Scenario {
        name,
        values,
        webhook,
        ..
    } = *scenario;
    let (template, pod_labels) = (&wired.template, &wired.pod_labels);
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
}

/// Each webhook points at the rendered Service's name, namespace, port and `/validate`, with the
/// stated policies.
fn hook_target(scenario: &Scenario<'_>, wired: &Webhook, hook: &ValidatingWebhook) {
    let Scenario { name, webhook, .. } = *scenario;
    let listen_port = wired.port.0;
    let timeout = webhook["timeoutSeconds"].as_i64().unwrap_or(5);
    let service_spec = wired.service.spec.as_ref().expect("service spec");
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
            assert_eq!(Some(port_name), wired.port.1.as_ref(), "{name}")
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
}

/// The selectors: only where Polyaxon runs, never kube-system, the excluded or opted-out
/// namespaces, never the webhook's own pods; the catalog and Polyaxon's run pods always.
fn hook_selectors(scenario: &Scenario<'_>, wired: &Webhook, hook: &ValidatingWebhook) {
    let Scenario {
        name,
        values,
        webhook,
        ..
    } = *scenario;
    let (pod_labels, config_map) = (&wired.pod_labels, &wired.config_map);
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
        !selects(objects, pod_labels),
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
}

/// TLS: either the chart's CA, or cert-manager's injection from the Certificate whose Secret the
/// pods mount.
fn hook_tls(scenario: &Scenario<'_>, wired: &Webhook, hook: &ValidatingWebhook) {
    let Scenario {
        name,
        webhook,
        rendered,
        ..
    } = *scenario;
    let (configuration, tls_secret) = (&wired.configuration, &wired.tls_secret);
    let objects = hook.object_selector.as_ref().expect("an object selector");
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

/// RBAC: list and watch Secrets and ConfigMaps, nothing else, only where the webhook watches.
fn rbac(scenario: &Scenario<'_>, wired: &Webhook) {
    let Scenario {
        name,
        values,
        webhook,
        rendered,
    } = *scenario;
    let (args, template) = (&wired.args, &wired.template);
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
}

fn catalog_passes_the_webhook(name: &str, config_map: &ConfigMap) {
    let object = serde_json::to_value(config_map).expect("json");
    let body = support::admission_review("chart", &object, "CREATE", false).to_string();
    let plx_webhook::Answer { review, allowed } = plx_webhook::answer(
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
