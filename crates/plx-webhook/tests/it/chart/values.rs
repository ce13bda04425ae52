//! values.schema.json and validate.yaml held to the conformance cases and to Polyaxon's values.

use super::*;

/// The model's conformance cases that a values file can hold, as values files: (case id, case,
/// values). A connection or a list of them becomes `connections:`.
fn values_cases() -> Vec<(String, Value, Value)> {
    let mut found = Vec::new();
    for (id, case) in plx_testkit::model_cases().expect("the model's conformance cases") {
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
    let plx_webhook::Answer { review, allowed } = plx_webhook::answer(
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
