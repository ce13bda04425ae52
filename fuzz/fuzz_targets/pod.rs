//! Any body as the Pod of an AdmissionReview (the webhook's Pod path: its init containers'
//! connections checked against the catalogs it watches): an answer or a rejection, never a
//! panic. Bytes that are JSON go in as the object; others as a string, which must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let object: serde_json::Value = serde_json::from_slice(data)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(data).into_owned()));
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
    let _ = plx_webhook::answer(
        review.to_string().as_bytes(),
        plx_webhook::Policy {
            keys: None,
            strict: false,
        },
    );
});
