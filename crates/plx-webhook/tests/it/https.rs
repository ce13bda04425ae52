//! The webhook over real HTTPS (rcgen certificates), with AdmissionReview v1 bodies built around
//! real objects: ConfigMaps made by kubectl, Secrets, and Pods laid out as Polyaxon's converter
//! lays out an init container.

use crate::support;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use plx_webhook::{Keys, RefKind};
use serde_json::{Value, json};
use support::{Options, Webhook, admission_review, kubectl_configmap};

const SEED_DUPLICATE: &str = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"secret":{"name":"s3-secret"}},{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path2"},"secret":{"name":"s3-secret"}}]"#;
const SEED_FIXED: &str = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"secret":{"name":"s3-secret"}},{"name":"s3-dataset2","kind":"s3","schema":{"bucket":"s3://bucket/path2"},"secret":{"name":"s3-secret"}}]"#;
const STORE: &str = r#"{"name":"plx-artifacts","kind":"s3","schema":{"bucket":"s3://plx-artifacts"},"secret":{"name":"s3-secret"}}"#;

fn agent_configmap(connections: &str) -> Value {
    kubectl_configmap(
        "polyaxon-polyaxon-config",
        &[
            ("POLYAXON_AGENT_CONNECTIONS", connections),
            ("POLYAXON_AGENT_ARTIFACTS_STORE", STORE),
            ("POLYAXON_LOG_LEVEL", "INFO"),
        ],
    )
}

fn causes(response: &Value) -> Vec<(String, String)> {
    response["response"]["status"]["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cause| {
            (
                cause["field"].as_str().unwrap_or_default().to_owned(),
                cause["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The review's warnings, one line each.
fn warnings(response: &Value) -> Vec<String> {
    response["response"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|warning| warning.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_valid_catalog_configmap_is_allowed_with_its_uid_echoed() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    let review = admission_review(
        "7a1e-allowed",
        &agent_configmap(SEED_FIXED),
        "CREATE",
        false,
    );
    let (status, body) = webhook.review(&review).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], "7a1e-allowed");
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(body["response"].get("warnings").is_none(), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_seed_examples_duplicate_name_is_denied_with_every_problem() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    // Two faults at once: the duplicate name and an s3 connection with a gs:// bucket.
    let connections = SEED_DUPLICATE.replace("s3://bucket/path2", "gs://bucket/path2");
    let review = admission_review(
        "9b2f-denied",
        &agent_configmap(&connections),
        "UPDATE",
        false,
    );
    let (status, body) = webhook.review(&review).await;
    assert_eq!(status, 200, "{body}");
    let response = &body["response"];
    assert_eq!(response["uid"], "9b2f-denied");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["reason"], "Invalid");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("2 problems in the connection catalog:\n"),
        "{message}"
    );
    assert!(
        message.contains("/data/POLYAXON_AGENT_CONNECTIONS/1/name: duplicate-name: a connection named `s3-dataset1` is already defined"),
        "{message}"
    );
    let got: BTreeSet<(String, String)> = causes(&body).into_iter().collect();
    let wanted: BTreeSet<(String, String)> = [
        (
            "data.POLYAXON_AGENT_CONNECTIONS[1].schema.bucket",
            "bucket-scheme-mismatch",
        ),
        ("data.POLYAXON_AGENT_CONNECTIONS[1].name", "duplicate-name"),
    ]
    .into_iter()
    .map(|(field, code)| (field.to_owned(), code.to_owned()))
    .collect();
    assert_eq!(got, wanted, "{body}");
    assert_eq!(causes(&body).len(), 2, "{body}");
    Ok(())
}

#[tokio::test]
async fn warnings_are_returned_and_dry_run_gets_the_same_verdict() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    let connections = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"env":{"AWS_SECRET_ACCESS_KEY":"not-in-a-secret"}}]"#;
    for dry_run in [false, true] {
        let review = admission_review("c3d4", &agent_configmap(connections), "CREATE", dry_run);
        let (status, body) = webhook.review(&review).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true, "{body}");
        let warnings = body["response"]["warnings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(warnings.len(), 1, "{body}");
        assert!(
            warnings[0]
                .as_str()
                .unwrap_or_default()
                .contains("secret-in-env"),
            "{body}"
        );
        // The value itself is never echoed.
        assert!(!body.to_string().contains("not-in-a-secret"), "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn configmaps_without_a_catalog_and_deletes_are_allowed() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    let other = kubectl_configmap(
        "app-settings",
        &[("LOG_LEVEL", "debug"), ("POLYAXON_AGENT_CONNECTIONSX", "[")],
    );
    let (_, body) = webhook
        .review(&admission_review("e5", &other, "CREATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let mut delete = admission_review("e6", &agent_configmap("[}"), "DELETE", false);
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let (_, body) = webhook.review(&delete).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    Ok(())
}

#[tokio::test]
async fn an_object_that_does_not_read_as_its_kind_is_denied_saying_why() -> anyhow::Result<()> {
    // The API server decodes what it sends; a ConfigMap whose data is not text is a body no
    // cluster writes, and it is refused with the reason rather than let through unchecked.
    let webhook = Webhook::start(Options::default()).await?;
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "agent-config", "namespace": "polyaxon"},
        "data": {"POLYAXON_AGENT_CONNECTIONS": [{"name": "x"}]}});
    let (status, body) = webhook
        .review(&admission_review("t1", &object, "CREATE", false))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("the object is not a valid ConfigMap"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn secrets_carrying_the_agent_catalog_are_checked() -> anyhow::Result<()> {
    use base64::Engine;
    let webhook = Webhook::start(Options::default()).await?;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "polyaxon-agent-secret", "namespace": "polyaxon"},
        "data": {"POLYAXON_AGENT_CONNECTIONS": encode(SEED_DUPLICATE), "POLYAXON_AUTH_TOKEN": encode("token-value")},
    });
    let (_, body) = webhook
        .review(&admission_review("f7", &secret, "CREATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        causes(&body),
        [(
            "data.POLYAXON_AGENT_CONNECTIONS[1].name".to_owned(),
            "duplicate-name".to_owned()
        )]
    );
    assert!(!body.to_string().contains("token-value"));
    Ok(())
}

#[tokio::test]
async fn env_objects_the_agent_refuses_are_denied_in_a_configmap_and_a_secret() -> anyhow::Result<()>
{
    use base64::Engine;
    // plx-init reads `env` as `{name, value}` objects; Polyaxon 2.18's AgentConfig, which reads
    // these two keys, refuses them ("Input should be a valid dictionary").
    let connections = r#"[{"name":"minio-data","kind":"s3","schema":{"bucket":"s3://data"},"secret":{"name":"s3-secret"},"env":[{"name":"AWS_ENDPOINT_URL","value":"http://minio:9000"}]}]"#;
    let store = r#"{"name":"plx-artifacts","kind":"s3","schema":{"bucket":"s3://plx-artifacts"},"env":[{"name":"AWS_ENDPOINT_URL","value":"http://minio:9000"}]}"#;
    let webhook = Webhook::start(Options::default()).await?;
    let configmap = kubectl_configmap(
        "polyaxon-polyaxon-config",
        &[
            ("POLYAXON_AGENT_CONNECTIONS", connections),
            ("POLYAXON_AGENT_ARTIFACTS_STORE", STORE),
        ],
    );
    let (_, body) = webhook
        .review(&admission_review("e1", &configmap, "UPDATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        causes(&body),
        [(
            "data.POLYAXON_AGENT_CONNECTIONS[0].env".to_owned(),
            "env-list-for-agent".to_owned()
        )]
    );
    let message = body["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("Polyaxon's agent reads POLYAXON_AGENT_CONNECTIONS")
            && message.contains("write it as a map"),
        "{message}"
    );
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "polyaxon-agent-secret", "namespace": "polyaxon"},
        "data": {"POLYAXON_AGENT_ARTIFACTS_STORE": encode(store)},
    });
    let (_, body) = webhook
        .review(&admission_review("e2", &secret, "CREATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        causes(&body),
        [(
            "data.POLYAXON_AGENT_ARTIFACTS_STORE.env".to_owned(),
            "env-list-for-agent".to_owned()
        )]
    );
    // The map form is what the agent reads: allowed.
    let fixed = connections.replace(
        r#"[{"name":"AWS_ENDPOINT_URL","value":"http://minio:9000"}]"#,
        r#"{"AWS_ENDPOINT_URL":"http://minio:9000"}"#,
    );
    let (_, body) = webhook
        .review(&admission_review(
            "e3",
            &agent_configmap(&fixed),
            "UPDATE",
            false,
        ))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    Ok(())
}

/// A job pod as Polyaxon 2.18's converter lays it out: one init container per store, running a
/// generated shell script, with the catalog of that one connection in its environment.
fn polyaxon_pod(catalog: &str, connection: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plx-operation-0b9b2c-abcde", "namespace": "polyaxon", "labels": {"app.kubernetes.io/managed-by": "polyaxon"}},
        "spec": {
            "initContainers": [{
                "name": format!("polyaxon-init-artifacts-{connection}-8c6d0a1f2e"),
                "image": "polyaxon/polyaxon-init:2.18.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c"],
                "args": [format!("if [ ! -d \"/plx-context/artifacts/{connection}\" ]; then mkdir -m 0777 -p /plx-context/artifacts/{connection}; fi; polyaxon initializer path --connection-name={connection} --connection-kind=s3 --path-from=s3://bucket/path1/train --path-to=/plx-context/artifacts/{connection}/train;")],
                "env": [
                    {"name": "POLYAXON_NO_API", "value": "true"},
                    {"name": "POLYAXON_CONNECTIONS_CATALOG", "value": catalog},
                ],
                "envFrom": [{"secretRef": {"name": "s3-secret"}}],
                "resources": {"requests": {"cpu": "0.1", "memory": "60Mi"}, "limits": {"cpu": "1", "memory": "500Mi"}},
                "volumeMounts": [{"name": "plx-context", "mountPath": "/plx-context"}],
            }],
            "containers": [{"name": "polyaxon-main", "image": "python:3.11", "command": ["python", "train.py"]}],
            "volumes": [{"name": "plx-context", "emptyDir": {}}],
        }
    })
}

#[tokio::test]
async fn pods_are_checked_against_their_embedded_catalog() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    let catalog = r#"{"connections":[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"secret":{"name":"s3-secret"}}]}"#;
    let (_, body) = webhook
        .review(&admission_review(
            "p1",
            &polyaxon_pod(catalog, "s3-dataset1"),
            "CREATE",
            false,
        ))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    // The generated command pulls from a connection the catalog does not hold.
    let (_, body) = webhook
        .review(&admission_review(
            "p2",
            &polyaxon_pod(catalog, "s3-dataset9"),
            "CREATE",
            false,
        ))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        causes(&body),
        [(
            "spec.initContainers[0].args".to_owned(),
            "unknown-connection".to_owned()
        )]
    );
    // A broken embedded catalog, with the path going on inside the variable's JSON.
    let broken = catalog.replace("s3://bucket/path1", "s3://Bucket_/path1");
    let (_, body) = webhook
        .review(&admission_review(
            "p3",
            &polyaxon_pod(&broken, "s3-dataset1"),
            "CREATE",
            false,
        ))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        causes(&body),
        [(
            "spec.initContainers[0].env[1].value.connections[0].schema.bucket".to_owned(),
            "invalid-bucket".to_owned()
        )]
    );
    Ok(())
}

#[derive(Default)]
struct Cluster(std::collections::HashMap<(RefKind, String), BTreeSet<String>>);

impl Keys for Cluster {
    fn keys(&self, kind: RefKind, namespace: &str, name: &str) -> Option<BTreeSet<String>> {
        assert_eq!(namespace, "polyaxon");
        self.0.get(&(kind, name.to_owned())).cloned()
    }
}

#[tokio::test]
async fn missing_secrets_and_keys_warn_and_strict_mode_refuses() -> anyhow::Result<()> {
    let mut cluster = Cluster::default();
    cluster.0.insert(
        (RefKind::Secret, "s3-secret".to_owned()),
        ["AWS_ACCESS_KEY_ID".to_owned()].into_iter().collect(),
    );
    let cluster: Arc<dyn Keys> = Arc::new(cluster);
    let connections = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"secret":{"name":"s3-secret"}},{"name":"s3-dataset2","kind":"s3","schema":{"bucket":"s3://bucket/path2"},"secret":{"name":"gone-secret"}}]"#;
    let review = admission_review("x1", &agent_configmap(connections), "CREATE", false);
    let lenient = Webhook::start(Options {
        keys: Some(cluster.clone()),
        ..Options::default()
    })
    .await?;
    let (_, body) = lenient.review(&review).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let warnings = warnings(&body);
    let wanted = [
        "key-not-found: connection `s3-dataset1` needs key `AWS_SECRET_ACCESS_KEY` in Secret `s3-secret`, which has only: AWS_ACCESS_KEY_ID",
        "secret-not-found: connection `s3-dataset2` names Secret `gone-secret`, which does not exist in namespace `polyaxon`",
        "secret-not-found: connection `plx-artifacts` names Secret `s3-secret`",
    ];
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    for wanted in &wanted[..2] {
        assert!(
            warnings.iter().any(|warning| warning.contains(wanted)),
            "{wanted} not in {warnings:?}"
        );
    }
    let strict = Webhook::start(Options {
        keys: Some(cluster),
        strict: true,
        ..Options::default()
    })
    .await?;
    let (_, body) = strict.review(&review).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(causes(&body).len(), 3, "{body}");
    Ok(())
}

#[tokio::test]
async fn malformed_wrongly_typed_and_oversize_bodies_get_4xx() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options {
        max_body: 64 * 1024,
        ..Options::default()
    })
    .await?;
    let client = webhook.client();
    let url = webhook.url("/validate");
    let (status, body) = client
        .post(&url, "application/json", b"{not json".to_vec())
        .await?;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = client
        .post(
            &url,
            "application/json",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":null}"#
                .to_vec(),
        )
        .await?;
    assert_eq!(status, 400);
    let (status, _) = client
        .post(
            &url,
            "application/json",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
        )
        .await?;
    assert_eq!(status, 400);
    let review = admission_review("z", &agent_configmap(SEED_FIXED), "CREATE", false).to_string();
    let (status, _) = client
        .post(&url, "text/plain", review.clone().into_bytes())
        .await?;
    assert_eq!(status, 415);
    let mut huge = agent_configmap(SEED_FIXED);
    huge["data"]["padding"] = Value::String("x".repeat(100 * 1024));
    let (status, _) = client
        .post(
            &url,
            "application/json",
            admission_review("z", &huge, "CREATE", false)
                .to_string()
                .into_bytes(),
        )
        .await?;
    assert_eq!(status, 413);
    // The server is still fine.
    let (status, _) = client
        .post(&url, "application/json", review.into_bytes())
        .await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn a_review_over_its_time_budget_is_refused() -> anyhow::Result<()> {
    // A budget no real check fits in: the request must be refused, not left hanging.
    let webhook = Webhook::start(Options {
        budget: Duration::from_nanos(1),
        ..Options::default()
    })
    .await?;
    let big: Vec<Value> = (0..2000)
        .map(|index| json!({"name": format!("s3-data{index}"), "kind": "s3", "schema": {"bucket": "s3://bucket/p"}, "secret": {"name": "s3-secret"}}))
        .collect();
    // Too large for kubectl's command line; the same shape written out.
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "polyaxon-polyaxon-config", "namespace": "polyaxon"},
        "data": {"POLYAXON_AGENT_CONNECTIONS": Value::Array(big).to_string()},
    });
    let review = admission_review("slow", &configmap, "CREATE", false);
    let (status, body) = webhook.review(&review).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("took longer than"), "{body}");
    Ok(())
}

#[tokio::test]
async fn health_readiness_and_metrics() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options {
        ready: false,
        ..Options::default()
    })
    .await?;
    let client = webhook.client();
    assert_eq!(client.get(&webhook.url("/healthz")).await?.0, 200);
    let (status, text) = client.get(&webhook.url("/readyz")).await?;
    assert_eq!((status, text.contains("not synced")), (503, true), "{text}");
    webhook
        .review(&admission_review(
            "m1",
            &agent_configmap(SEED_FIXED),
            "CREATE",
            false,
        ))
        .await;
    webhook
        .review(&admission_review(
            "m2",
            &agent_configmap(SEED_DUPLICATE),
            "CREATE",
            false,
        ))
        .await;
    webhook
        .client()
        .post(&webhook.url("/validate"), "application/json", b"[".to_vec())
        .await?;
    let (status, text) = client.get(&webhook.url("/metrics")).await?;
    assert_eq!(status, 200);
    for line in [
        "plx_webhook_requests_total{verdict=\"allowed\"} 1",
        "plx_webhook_requests_total{verdict=\"denied\"} 1",
        "plx_webhook_requests_total{verdict=\"malformed\"} 1",
        "plx_webhook_review_seconds_count 3",
    ] {
        assert!(text.contains(line), "`{line}` not in\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() -> anyhow::Result<()> {
    let webhook = Webhook::start(Options::default()).await?;
    let old_client = webhook.client();
    assert_eq!(old_client.get(&webhook.url("/healthz")).await?.0, 200);
    // cert-manager renews: a new key and certificate, here from a new CA, written in place.
    let renewed = plx_testkit::Pki::new(&["localhost", "127.0.0.1"])?;
    renewed.write(webhook.dir.path())?;
    let new_client = support::https(&renewed.ca_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if new_client.get(&webhook.url("/healthz")).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections get the new certificate, which the old CA does not sign.
    assert!(
        support::https(&webhook.pki.ca_pem)
            .get(&webhook.url("/healthz"))
            .await
            .is_err()
    );
    // A half-written pair (certificate without its key) keeps the current one serving.
    std::fs::write(
        webhook.dir.path().join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\n",
    )?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        support::https(&renewed.ca_pem)
            .get(&webhook.url("/healthz"))
            .await?
            .0,
        200
    );
    Ok(())
}

/// A run Pod as Polyaxon 2.18's own converter generates it (`conformance/polyaxon_converter.py`)
/// for a deployment whose `init.image` is `image`: the auth and tmux plugins, a git init and an
/// s3 entry.
fn generated_pod(image: &str) -> Value {
    let case = json!({
        "uuid": "8aac02e8bf3545e5a2a8d6b0f7a1f3a1",
        "agent": {
            "namespace": "polyaxon",
            "init": {"image": image},
            "artifactsStore": serde_json::from_str::<Value>(STORE).expect("JSON"),
            "connections": [
                {"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "s3://bucket/path1"}, "secret": {"name": "s3-secret"}},
                {"name": "repo", "kind": "git", "schema": {"url": "https://github.com/polyaxon/polyaxon"}},
            ],
        },
        "operation": {"version": 1.1, "kind": "compiled_operation",
            "plugins": {"auth": true, "tmux": true, "collectArtifacts": true, "autoResume": true, "collectLogs": false},
            "run": {"kind": "job", "connections": ["s3-dataset1"],
                "init": [{"connection": "repo"}, {"artifacts": {"dirs": ["train"]}, "connection": "s3-dataset1"}],
                "container": {"image": "python:3.11", "command": ["python", "train.py"]}}},
    });
    let generated = plx_testkit::polyaxon_converter(&case).expect("Polyaxon's converter runs");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "plx-operation-8aac02-abcde", "namespace": "polyaxon", "labels": {"app.kubernetes.io/managed-by": "polyaxon"}},
        "spec": {
            "initContainers": generated["initContainers"],
            "containers": [{"name": "polyaxon-main", "image": "python:3.11", "command": ["python", "train.py"]}],
            "volumes": generated["volumes"],
        }
    })
}

#[tokio::test]
async fn a_scratch_init_image_that_cannot_run_a_generated_command_is_named_before_the_pod_starts()
-> anyhow::Result<()> {
    let lenient = Webhook::start(Options::default()).await?;
    // The scratch image as the global `init.image`: Polyaxon gives every generated container it.
    let pod = generated_pod("registry.example.com/plx-init");
    let (_, body) = lenient
        .review(&admission_review("i1", &pod, "CREATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let warnings = warnings(&body);
    for wanted in [
        "init container `polyaxon-init-auth` runs `polyaxon initializer auth` in the plx-init image",
        "init container `polyaxon-init-tools` runs `cp /usr/bin/tmux /opt/polyaxon/bin/tmux`",
        "runs `polyaxon initializer git --repo-path=",
    ] {
        assert!(
            warnings.iter().any(|warning| warning.contains(wanted)
                && warning.contains("init-image-cannot-run")
                && warning.contains("plx-init-polyaxon")),
            "{wanted} not in {warnings:?}"
        );
    }
    // The s3 entry and the outputs restore are what the scratch image runs.
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let strict = Webhook::start(Options {
        strict: true,
        ..Options::default()
    })
    .await?;
    let (_, body) = strict
        .review(&admission_review("i2", &pod, "CREATE", false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(causes(&body).len(), 3, "{body}");
    // The layered image runs all of it: nothing to say.
    let (_, body) = strict
        .review(&admission_review(
            "i3",
            &generated_pod("registry.example.com/plx-init-polyaxon"),
            "CREATE",
            false,
        ))
        .await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(body["response"].get("warnings").is_none(), "{body}");
    Ok(())
}
