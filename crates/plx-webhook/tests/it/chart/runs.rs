//! What the chart renders, run: the webhook with its rendered arguments and certificate, the
//! `helm test` pods against a real S3 server, and the matchConditions under a CEL evaluator.

use super::*;

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
