//! Every catalog conformance case, wrapped in the agent's ConfigMap, through the webhook over
//! HTTPS: the same verdict as the case, and the same codes at the same places as `plx-init
//! validate` gives for that ConfigMap (the webhook uses plx-connections, not a copy).

use crate::support;

use std::collections::BTreeSet;

use plx_connections::Severity;
use serde_json::{Map, Value, json};
use support::{Options, Webhook, admission_review};

/// The case's document as Polyaxon's agent ConfigMap, when it is a catalog.
fn as_configmap(document: &Value) -> Option<Value> {
    let mut data = Map::new();
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match document {
        Value::Array(_) => {
            data.insert(
                plx_connections::AGENT_CONNECTIONS.to_owned(),
                Value::String(document.to_string()),
            );
        }
        Value::Object(map) if map.contains_key("apiVersion") => {
            if map.get("kind") != Some(&json!("ConfigMap")) {
                return None;
            }
            let data = map.get("data")?.as_object()?;
            if !data.contains_key(plx_connections::AGENT_CONNECTIONS)
                && !data.contains_key(plx_connections::AGENT_ARTIFACTS_STORE)
            {
                return None;
            }
            return Some(document.clone());
        }
        Value::Object(map)
            if map.contains_key(plx_connections::AGENT_CONNECTIONS)
                || map.contains_key(plx_connections::AGENT_ARTIFACTS_STORE) =>
        {
            for (key, value) in map {
                data.insert(key.clone(), Value::String(text(value)));
            }
        }
        Value::Object(map)
            if map.contains_key("connections") || map.contains_key("artifactsStore") =>
        {
            // mountConnections and other values keys have no place in the agent's ConfigMap.
            if map
                .keys()
                .any(|key| key != "connections" && key != "artifactsStore")
            {
                return None;
            }
            if let Some(connections) = map.get("connections") {
                data.insert(
                    plx_connections::AGENT_CONNECTIONS.to_owned(),
                    Value::String(connections.to_string()),
                );
            }
            if let Some(store) = map.get("artifactsStore") {
                data.insert(
                    plx_connections::AGENT_ARTIFACTS_STORE.to_owned(),
                    Value::String(store.to_string()),
                );
            }
        }
        Value::Object(map) if map.contains_key("kind") && !map.contains_key("run") => {
            data.insert(
                plx_connections::AGENT_CONNECTIONS.to_owned(),
                Value::String(Value::Array(vec![document.clone()]).to_string()),
            );
        }
        _ => return None,
    }
    Some(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "polyaxon-polyaxon-config", "namespace": "polyaxon"}, "data": data}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_case_gets_plx_init_validates_verdict_and_codes() -> anyhow::Result<()> {
    let all = plx_testkit::model_cases()?;
    let webhook = Webhook::start(Options::default()).await?;
    let (mut compared, mut failures) = (0, Vec::new());
    for (index, (name, case)) in all.iter().enumerate() {
        let Some(configmap) = case.get("document").and_then(as_configmap) else {
            continue;
        };
        if case.get("catalog").is_some() {
            continue;
        }
        compared += 1;
        // What `plx-init validate` says about this ConfigMap (it calls exactly this).
        let expected = plx_connections::validate_value(&configmap, &[]);
        let expected_errors: BTreeSet<(String, String)> = expected
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (plx_webhook::review::field_path(&d.path), d.code.to_string()))
            .collect();
        let expected_warnings = expected
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count();
        let (status, body) = webhook
            .review(&admission_review(
                &format!("case-{index}"),
                &configmap,
                "CREATE",
                false,
            ))
            .await;
        let response = &body["response"];
        let got_errors: BTreeSet<(String, String)> = response["status"]["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cause| {
                (
                    cause["field"].as_str().unwrap_or_default().to_owned(),
                    cause["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let got_warnings = response["warnings"].as_array().map_or(0, Vec::len);
        // Wrapped into the agent's ConfigMap, a connection is read by Polyaxon's agent, which is
        // stricter than plx-init (a list of `{name, value}` objects in `env`): the case's verdict
        // holds where plx-init gives the wrapped ConfigMap the same one.
        let valid = case["valid"].as_bool().unwrap_or(false) && !expected.has_errors();
        if status != 200
            || response["allowed"].as_bool() != Some(valid)
            || got_errors != expected_errors
            || got_warnings != expected_warnings
        {
            failures.push(format!(
                "{name}: status {status}, allowed {} (case: valid {valid}), causes {got_errors:?} (plx-init: {expected_errors:?}), warnings {got_warnings} (plx-init: {expected_warnings})",
                response["allowed"]
            ));
        }
    }
    println!(
        "webhook conformance: {compared} catalog cases compared, {} failed",
        failures.len()
    );
    assert!(compared >= 150, "only {compared} cases could be wrapped");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
