//! The catalog a Kubernetes object carries: Polyaxon's agent reads its connections from a
//! ConfigMap or a Secret (`POLYAXON_AGENT_CONNECTIONS`, `POLYAXON_AGENT_ARTIFACTS_STORE`), and
//! a pod's catalog may sit in one too (`POLYAXON_CONNECTIONS_CATALOG`). `plx-init validate`
//! reads them from a stream of manifests and the webhook from admission requests: both through
//! [`carried_catalog`], so they judge one object alike.

use serde_json::{Map, Value, json};

use crate::{
    AGENT_ARTIFACTS_STORE, AGENT_CONNECTIONS, CONNECTIONS_CATALOG, Catalog, Code, Diagnostic,
    Report, Severity, validate_value,
};

/// The keys of a ConfigMap or Secret that hold a catalog: the agent's two and the pod's.
pub const CATALOG_KEYS: [&str; 3] = [
    AGENT_CONNECTIONS,
    AGENT_ARTIFACTS_STORE,
    CONNECTIONS_CATALOG,
];

/// The catalog `object` (of `kind`) carries, checked against `catalogs` as a ConfigMap's `data`
/// is (every path under `/data/<key>`); None where it is no ConfigMap or Secret, or carries none of
/// [`CATALOG_KEYS`]. Only those keys are read: a ConfigMap carries other settings that are not
/// ours to judge. A Secret's `data` is decoded from base64 and merged with its `stringData` as
/// the API server merges them; a catalog value that is not base64 of UTF-8 text is an
/// `invalid-json` error at its key, and the object's other keys are still checked.
pub fn carried_catalog(kind: &str, object: &Value, catalogs: &[Catalog]) -> Option<Report> {
    let data = match kind {
        "ConfigMap" => catalog_keys(object.get("data"))
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect(),
        "Secret" => secret_data(object),
        _ => return None,
    };
    catalog_in(data, catalogs)
}

/// The catalog in the `data` of a ConfigMap or Secret read into its type (the webhook's): each
/// key with its text, or None where a Secret's bytes are not UTF-8 text. Only the keys in
/// [`CATALOG_KEYS`] are read; None where there are none.
pub fn catalog_in(
    data: impl IntoIterator<Item = (String, Option<Value>)>,
    catalogs: &[Catalog],
) -> Option<Report> {
    let (mut texts, mut undecodable) = (Map::new(), Vec::new());
    for (key, value) in data {
        if !CATALOG_KEYS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Some(value) => {
                texts.insert(key, value);
            }
            None => undecodable.push(key),
        }
    }
    if texts.is_empty() && undecodable.is_empty() {
        return None;
    }
    let mut report = validate_value(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": texts}),
        catalogs,
    );
    if !undecodable.is_empty() {
        report.content = None;
        let diagnostics = undecodable.iter().map(|key| Diagnostic {
            severity: Severity::Error,
            path: format!("/data/{key}"),
            code: Code::InvalidJson,
            message: "not base64-encoded UTF-8 text; Polyaxon's agent reads this key as JSON: encode the value with `base64`, or write it under `stringData`".to_owned(),
        });
        report.diagnostics = diagnostics.chain(report.diagnostics).collect();
    }
    Some(report)
}

/// The catalog keys of a `data` or `stringData` map.
fn catalog_keys(data: Option<&Value>) -> Map<String, Value> {
    data.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| CATALOG_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A Secret's catalog keys, `data` decoded and `stringData` over it; None for a value of `data`
/// that is not base64 of UTF-8 text.
fn secret_data(secret: &Value) -> Vec<(String, Option<Value>)> {
    use base64::Engine;
    let mut merged: Vec<(String, Option<Value>)> = catalog_keys(secret.get("data"))
        .into_iter()
        .map(|(key, value)| {
            let decoded = value
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(Value::String);
            (key, decoded)
        })
        .collect();
    for (key, value) in catalog_keys(secret.get("stringData")) {
        merged.retain(|(known, _)| *known != key);
        merged.push((key, Some(value)));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(report: &Report) -> Vec<(String, &'static str)> {
        report
            .diagnostics
            .iter()
            .map(|diagnostic| (diagnostic.path.clone(), diagnostic.code.as_str()))
            .collect()
    }

    #[test]
    fn a_secret_is_read_decoded_and_merged_as_the_api_server_merges_it() {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "data": {
            AGENT_CONNECTIONS: encode(r#"[{"name": "d", "kind": "s3", "schema": {"bucket": "s3://my-bucket"}, "secret": {"name": "s3-secret"}}]"#),
            "OTHER": "not even base64 %%%",
        }});
        let report = carried_catalog("Secret", &secret, &[]).expect("a catalog");
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        assert!(matches!(report.content, Some(crate::Content::Catalog(_))));
        // Bad base64 is named at its key, and the other key is still judged.
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "data": {
            AGENT_CONNECTIONS: "%%%",
            AGENT_ARTIFACTS_STORE: encode(r#"{"name": "s", "kind": "nope"}"#),
        }});
        let report = carried_catalog("Secret", &secret, &[]).expect("a catalog");
        let found = codes(&report);
        assert_eq!(
            found.first(),
            Some(&(format!("/data/{AGENT_CONNECTIONS}"), "invalid-json"))
        );
        assert!(
            found
                .iter()
                .any(|(path, _)| path.starts_with(&format!("/data/{AGENT_ARTIFACTS_STORE}"))),
            "{found:?}"
        );
        assert!(report.content.is_none());
    }

    #[test]
    fn bad_json_is_the_same_finding_in_a_configmap_and_a_secret() {
        use base64::Engine;
        let text = "[{not json";
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {AGENT_CONNECTIONS: text, "LOG_LEVEL": "x"}});
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "data": {
            AGENT_CONNECTIONS: base64::engine::general_purpose::STANDARD.encode(text),
        }});
        let from_configmap = carried_catalog("ConfigMap", &configmap, &[]).expect("a catalog");
        let from_secret = carried_catalog("Secret", &secret, &[]).expect("a catalog");
        assert_eq!(from_configmap.diagnostics, from_secret.diagnostics);
        assert_eq!(
            codes(&from_configmap),
            [(format!("/data/{AGENT_CONNECTIONS}"), "invalid-json")]
        );
    }

    #[test]
    fn objects_without_a_catalog_are_none_of_ours() {
        for object in [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"LOG_LEVEL": "info"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"AWS_ACCESS_KEY_ID": "x"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "data": {AGENT_CONNECTIONS: "[]"}}),
        ] {
            let kind = object["kind"].as_str().unwrap_or_default();
            assert!(carried_catalog(kind, &object, &[]).is_none(), "{object}");
        }
    }
}
