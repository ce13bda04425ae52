//! `plx-init validate` as a user runs it: exit codes, text and JSON output.

use std::{path::Path, process::Command};

fn plx_init(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .args(args)
        .output()
        .expect("plx-init runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

const SEED_DUPLICATE: &str = "connections:\n- {name: s3-dataset1, kind: s3, schema: {bucket: 's3://bucket/path1'}, secret: {name: s3-secret}}\n- {name: s3-dataset1, kind: s3, schema: {bucket: 's3://bucket/path2'}, secret: {name: s3-secret}}\n";
const CATALOG: &str = "- {name: s3-dataset1, kind: s3, schema: {bucket: 's3://bucket/path1'}, secret: {name: s3-secret}}\n";
const JOB: &str = "run: {kind: job, connections: [s3-dataset1], init: [{artifacts: {dirs: [train]}, connection: s3-dataset1}]}\n";

#[test]
fn valid_catalog_exits_0() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, _) = plx_init(&["validate", &write(&dir, "c.yaml", CATALOG)]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok (1 connection)"), "{stdout}");
}

#[test]
fn errors_exit_1_in_compiler_style() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = write(&dir, "seed.yaml", SEED_DUPLICATE);
    let (code, stdout, _) = plx_init(&["validate", &file]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{file}: /connections/1/name: error[duplicate-name]: "
        )),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 error, 0 warnings in 1 file\n"),
        "{stdout}"
    );
}

#[test]
fn json_format_lists_every_file_and_diagnostic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let catalog = write(&dir, "c.yaml", CATALOG);
    let job = write(
        &dir,
        "job.yaml",
        "run: {connections: [s3-dataset2], init: [{paths: ['/etc/x']}]}\n",
    );
    let (code, stdout, _) =
        plx_init(&["validate", "--format", "json", "--catalog", &catalog, &job]);
    assert_eq!(code, 1);
    let output: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    let files = output["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[1]["file"], job);
    let diagnostics = files[1]["diagnostics"].as_array().expect("diagnostics");
    let codes: Vec<&str> = diagnostics
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(codes, ["unknown-connection", "path-escape"]);
    for diagnostic in diagnostics {
        for key in ["severity", "path", "code", "message"] {
            assert!(diagnostic.get(key).is_some(), "{diagnostic}");
        }
    }
}

#[test]
fn job_checked_against_catalog_exits_0() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, _) = plx_init(&[
        "validate",
        "--catalog",
        &write(&dir, "c.yaml", CATALOG),
        &write(&dir, "j.yaml", JOB),
    ]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn stdin_is_read_for_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("plx-init runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(SEED_DUPLICATE.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("plx-init ends");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("-: /connections/1/name: error[duplicate-name]")
    );
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    let (code, _, stderr) = plx_init(&["validate", "/nonexistent/catalog.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read /nonexistent/catalog.yaml"),
        "{stderr}"
    );
    let (code, _, _) = plx_init(&["validate"]);
    assert_eq!(code, 2);
    let (code, _, _) = plx_init(&["validate", "--format", "xml", "x"]);
    assert_eq!(code, 2);
}

#[test]
fn a_job_given_as_catalog_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let job = write(&dir, "j.yaml", JOB);
    let (code, _, stderr) = plx_init(&["validate", "--catalog", &job, &job]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is a job, not a connection catalog"),
        "{stderr}"
    );
}

#[test]
fn alias_bomb_is_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9u8 {
        let (this, prev) = ((b'b' + i) as char, (b'a' + i) as char);
        bomb.push_str(&format!(
            "{this}: &{this} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, _) = plx_init(&["validate", &write(&dir, "bomb.yaml", &bomb)]);
    assert_eq!(code, 1);
    assert!(stdout.contains("error[too-large]"), "{stdout}");
}

/// `helm template` output: documents behind `# Source:` comments, a trailing `---`, objects of
/// every kind, the agent's ConfigMap (the seed page's duplicate name) and a Secret carrying a
/// catalog in base64.
const RENDERED: &str = r#"---
# Source: polyaxon/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: polyaxon-polyaxon-api
  namespace: polyaxon
spec:
  ports: [{port: 80}]
---
# Source: polyaxon/templates/agent-config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: polyaxon-polyaxon-agent-config
  namespace: polyaxon
data:
  POLYAXON_AGENT_ARTIFACTS_STORE: "{\"name\":\"plx-artifacts\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://plx-artifacts\"},\"secret\":{\"name\":\"s3-secret\"}}"
  POLYAXON_AGENT_CONNECTIONS: "[{\"name\":\"s3-dataset1\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://bucket/path1\"},\"secret\":{\"name\":\"s3-secret\"}},{\"name\":\"s3-dataset1\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://bucket/path2\"},\"secret\":{\"name\":\"s3-secret\"}}]"
---
# Source: polyaxon/templates/operator-clusterrole.yaml
# Polyaxon's chart 2.15.1 renders `rules:` twice here; Helm and Kubernetes keep the last.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: polyaxon-polyaxon-operator-clusterrole
rules:
rules:
- {apiGroups: [""], resources: [events], verbs: [get, list, watch]}
---
# Source: polyaxon/templates/other-config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: polyaxon-polyaxon-config
data:
  POLYAXON_LOG_LEVEL: INFO
---
apiVersion: v1
kind: Secret
metadata:
  name: agent-catalog
  namespace: polyaxon
data:
  POLYAXON_AGENT_CONNECTIONS: W3sibmFtZSI6ImdjcyIsImtpbmQiOiJzMyIsInNjaGVtYSI6eyJidWNrZXQiOiJnczovL2JrdCJ9fV0=
---
"#;

#[test]
fn a_rendered_stream_is_checked_object_by_object() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = write(&dir, "rendered.yaml", RENDERED);
    let (code, stdout, stderr) = plx_init(&["validate", &file]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    // Each finding names its object and the path inside it; the Service and the ConfigMap with
    // no catalog are left out quietly.
    assert!(
        stdout.contains(&format!(
            "{file}: ConfigMap polyaxon/polyaxon-polyaxon-agent-config: /data/POLYAXON_AGENT_CONNECTIONS/1/name: error[duplicate-name]: "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{file}: Secret polyaxon/agent-catalog: /data/POLYAXON_AGENT_CONNECTIONS/0/schema/bucket: error[bucket-scheme-mismatch]: "
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("polyaxon-polyaxon-api"), "{stdout}");
    assert!(!stdout.contains("polyaxon-polyaxon-config"), "{stdout}");
    assert!(!stdout.contains("clusterrole"), "{stdout}");
    assert!(stdout.ends_with("in 2 documents\n"), "{stdout}");
    // The same stream on standard input, as `helm template ... | plx-init validate -`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("plx-init runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), RENDERED.as_bytes())
        .expect("written");
    let output = child.wait_with_output().expect("plx-init ends");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("-: ConfigMap polyaxon/polyaxon-polyaxon-agent-config: /data/POLYAXON_AGENT_CONNECTIONS/1/name: error[duplicate-name]"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // A stream with no catalog in it says so and passes.
    let file = write(
        &dir,
        "plain.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
    );
    let (code, stdout, _) = plx_init(&["validate", &file]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("{file}: ok (nothing to check)")),
        "{stdout}"
    );
}

/// The Helm 4 post-renderer plugin (`helm-plugins/plx-validate`), run by Helm's own code:
/// `helm install --dry-run=client --post-renderer plx-validate` through helm-python-sdk, on a chart
/// that renders Polyaxon's agent ConfigMap as Polyaxon's chart does (`tests/helm/agent-chart`).
/// Helm runs post-renderers before it sends any object, so a refusal here is a refusal whole.
#[test]
fn the_helm_post_renderer_refuses_a_broken_release_whole_and_says_why() -> anyhow::Result<()> {
    use std::{io::Write, path::PathBuf, process::Stdio};
    let root = plx_testkit::workspace_root();
    let python = plx_testkit::helm_python();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_plx-init"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helm/agent-chart");
    let s3 = |name: &str, env: serde_json::Value| {
        serde_json::json!({"name": name, "kind": "s3", "schema": {"bucket": "s3://data"},
            "secret": {"name": "s3-secret"}, "env": env})
    };
    let install = |connections: serde_json::Value| {
        serde_json::json!({"op": "install", "chart": chart, "name": "polyaxon",
            "namespace": "polyaxon", "post_renderer": "plx-validate",
            "values": {"connections": connections}})
    };
    let map = serde_json::json!({"AWS_ENDPOINT_URL": "http://minio:9000"});
    let objects = serde_json::json!([{"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"}]);
    let requests = serde_json::json!([
        install(serde_json::json!([
            s3("s3-dataset1", map.clone()),
            s3("s3-dataset1", map.clone())
        ])),
        install(serde_json::json!([s3("minio-data", objects)])),
        install(serde_json::json!([
            s3("s3-dataset1", map.clone()),
            s3("s3-dataset2", map)
        ])),
    ]);
    let mut child = Command::new(&python)
        .arg(plx_testkit::helm_harness())
        .env("HELM_PLUGINS", root.join("helm-plugins"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(requests.to_string().as_bytes())?;
    }
    let output = child.wait_with_output()?;
    // Helm 4 keeps a post-renderer's stderr to itself; the findings reach Helm's own stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
        .map_err(|error| anyhow::anyhow!("helm.py answered no JSON ({error}): {stderr}"))?;
    let refused = "plugin \"plx-validate\" exited with error";
    for answer in &answers[..2] {
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(refused), "{answer}\n{stderr}");
    }
    // Polyaxon's template sets no namespace (Helm applies it), so the object is named alone.
    let config = "helm: ConfigMap polyaxon-polyaxon-agent-config";
    for finding in [
        format!("{config}: /data/POLYAXON_AGENT_CONNECTIONS/1/name: error[duplicate-name]"),
        format!("{config}: /data/POLYAXON_AGENT_CONNECTIONS/0/env: error[env-list-for-agent]"),
    ] {
        assert!(stderr.contains(&finding), "{finding} not in:\n{stderr}");
    }
    // A good release passes through unchanged, the Deployment and the catalog with it.
    let manifest = answers[2]["manifest"].as_str().unwrap_or_default();
    assert!(
        manifest.contains("kind: Deployment") && manifest.contains("s3-dataset2"),
        "{}",
        answers[2]
    );
    assert!(
        stderr.contains(&format!("{config}: ok (2 connections")),
        "{stderr}"
    );
    Ok(())
}
