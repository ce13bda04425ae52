//! The fuzz corpora and regressions of `catalog`, `review`, `rendered` and `pod` (`cargo xtask
//! fuzz`), replayed through the same calls and invariants as the fuzz targets, so a crash once
//! found stays fixed.

#[test]
fn every_catalog_input_gets_a_report() {
    let inputs = plx_testkit::fuzz_inputs("catalog");
    assert!(inputs.len() > 10, "the catalog corpus is missing");
    for (name, bytes) in inputs {
        let text = String::from_utf8_lossy(&bytes);
        let report = plx_connections::validate(&text, &[]);
        if !report.has_errors() {
            assert!(
                report.content.is_some(),
                "{name}: no error, yet nothing built"
            );
        }
        if let Some(plx_connections::Content::Catalog(catalog)) = report.content {
            let _ = plx_connections::validate(&text, &[catalog]);
        }
    }
}

#[test]
fn every_review_input_gets_an_answer_or_a_rejection() {
    let inputs = plx_testkit::fuzz_inputs("review");
    assert!(inputs.len() > 10, "the review corpus is missing");
    let mut answered = 0;
    for (_, bytes) in inputs {
        let policy = plx_webhook::Policy {
            keys: None,
            strict: false,
        };
        answered += usize::from(plx_webhook::answer(&bytes, policy).is_ok());
    }
    // The seed review at least is well-formed.
    assert!(answered > 0);
}

#[test]
fn every_rendered_input_is_read_or_refused() {
    let inputs = plx_testkit::fuzz_inputs("rendered");
    assert!(!inputs.is_empty(), "the rendered corpus is missing");
    let mut checked = 0;
    for (_, bytes) in inputs {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(documents) = plx_connections::read_manifests(&text) {
            for document in &documents {
                let kind = document["kind"].as_str().unwrap_or_default();
                checked +=
                    usize::from(plx_connections::carried_catalog(kind, document, &[]).is_some());
            }
        }
    }
    // The seed's ConfigMap and Secret carry catalogs.
    assert!(checked >= 2, "{checked} catalogs checked");
}

#[test]
fn every_pod_input_gets_an_answer_or_a_rejection() {
    let inputs = plx_testkit::fuzz_inputs("pod");
    assert!(!inputs.is_empty(), "the pod corpus is missing");
    let mut denied = 0;
    for (name, bytes) in inputs {
        let object: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "fuzz",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:polyaxon:polyaxon-operator"},
                "dryRun": false,
                "namespace": "polyaxon",
                "object": object,
            }
        });
        let policy = plx_webhook::Policy {
            keys: None,
            strict: false,
        };
        if let Ok(answer) = plx_webhook::answer(review.to_string().as_bytes(), policy) {
            denied += usize::from(!answer.allowed);
            let review = serde_json::to_value(&answer.review).unwrap_or_default();
            assert!(review["response"]["uid"] == "fuzz", "{name}: {review}");
        }
    }
    // The seed whose init container names a connection its catalog lacks is denied.
    assert!(denied > 0);
}
