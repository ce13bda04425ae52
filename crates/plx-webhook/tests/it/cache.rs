//! The Secret and ConfigMap cache through the real `kube::Client` and watcher, against a mock of
//! the API server's list and watch endpoints (no API server can run here): key names arrive by
//! list and by watch, deletions remove them, readiness follows the first complete list.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::Query, response::Response, routing::get};
use futures::StreamExt;
use plx_webhook::{Cache, Keys, RefKind};
use serde_json::{Value, json};

fn secret(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| ((*key).to_owned(), json!("c2VjcmV0LXZhbHVl")))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "polyaxon", "resourceVersion": "11"}, "data": data})
}

fn config_map(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| ((*key).to_owned(), json!("v")))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "polyaxon", "resourceVersion": "12"}, "data": data})
}

/// One resource's list and watch, as the API server answers them.
async fn endpoint(
    kind: &'static str,
    query: std::collections::HashMap<String, String>,
) -> Response {
    let watching = query
        .get("watch")
        .is_some_and(|value| value == "true" || value == "1");
    if !watching {
        let items = match kind {
            "SecretList" => vec![
                secret("s3-secret", &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
                secret("old-secret", &["X"]),
            ],
            _ => vec![config_map("s3-config", &["AWS_REGION"])],
        };
        let list = json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "20"}, "items": items});
        return Response::new(Body::from(list.to_string()));
    }
    // The watch: a change and a deletion, then the stream stays open as a real watch does.
    let events = if kind == "SecretList" {
        vec![
            json!({"type": "ADDED", "object": secret("late-secret", &["TOKEN"])}),
            json!({"type": "DELETED", "object": secret("old-secret", &["X"])}),
        ]
    } else {
        vec![
            json!({"type": "MODIFIED", "object": config_map("s3-config", &["AWS_REGION", "AWS_ENDPOINT_URL"])}),
        ]
    };
    let lines = futures::stream::iter(
        events
            .into_iter()
            .map(|event| Ok::<_, std::io::Error>(format!("{event}\n"))),
    )
    .chain(futures::stream::pending());
    Response::new(Body::from_stream(lines))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_follows_list_and_watch_and_keeps_only_key_names() -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/api/v1/namespaces/polyaxon/secrets",
            get(|Query(query)| endpoint("SecretList", query)),
        )
        .route(
            "/api/v1/namespaces/polyaxon/configmaps",
            get(|Query(query)| endpoint("ConfigMapList", query)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url: http::Uri = format!("http://{}", listener.local_addr()?).parse()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = kube::Client::try_from(kube::Config::new(url))?;
    let cache = Arc::new(Cache::new(vec!["polyaxon".to_owned()]));
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(cache.clone().run(client, ready.clone()));
    let names = |keys: &[&str]| {
        keys.iter()
            .map(|key| (*key).to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let settled = ready.load(Ordering::Relaxed)
            && cache
                .keys(RefKind::Secret, "polyaxon", "late-secret")
                .is_some()
            && cache
                .keys(RefKind::Secret, "polyaxon", "old-secret")
                .is_none()
            && cache.keys(RefKind::ConfigMap, "polyaxon", "s3-config")
                == Some(names(&["AWS_ENDPOINT_URL", "AWS_REGION"]));
        if settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cache.keys(RefKind::Secret, "polyaxon", "s3-secret"),
        Some(names(&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]))
    );
    assert_eq!(
        cache.keys(RefKind::Secret, "polyaxon", "late-secret"),
        Some(names(&["TOKEN"]))
    );
    assert_eq!(cache.keys(RefKind::Secret, "other", "s3-secret"), None);
    // Reviews in a namespace the webhook does not watch skip the cross-object checks rather
    // than call every Secret missing; in a watched one, a missing Secret is a warning.
    assert!(cache.watches("polyaxon") && !cache.watches("other"));
    let catalog = r#"[{"name":"data","kind":"s3","schema":{"bucket":"s3://bucket/p"},"secret":{"name":"absent-secret"}}]"#;
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "agent-config"}, "data": {"POLYAXON_AGENT_CONNECTIONS": catalog}});
    for (namespace, warned) in [("polyaxon", true), ("other", false)] {
        let mut body = json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "admin"},
            "object": object, "dryRun": false}});
        body["request"]["name"] = json!("agent-config");
        let plx_webhook::Answer { review, allowed } = plx_webhook::answer(
            body.to_string().as_bytes(),
            plx_webhook::Policy {
                keys: Some(cache.as_ref()),
                strict: false,
            },
        )?;
        let review = serde_json::to_value(&review)?;
        assert!(allowed, "{review}");
        assert_eq!(
            review["response"]["warnings"]
                .to_string()
                .contains("absent-secret"),
            warned,
            "{namespace}: {review}"
        );
    }
    Ok(())
}
