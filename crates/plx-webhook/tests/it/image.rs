//! The `plx-webhook` image (built by `cargo xtask images`) serving real HTTPS from a container:
//! non-root, read-only root filesystem, certificates mounted as cert-manager's Secret would be,
//! and a clean exit when Docker sends SIGTERM.

use crate::support;

use std::{process::Command, time::Duration};

const IMAGE: &str = concat!("plx-webhook:", env!("CARGO_PKG_VERSION"));

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_reviews_and_stops_cleanly() -> anyhow::Result<()> {
    let pki = plx_testkit::Pki::new(&["localhost", "127.0.0.1"])?;
    let certs = tempfile::tempdir()?;
    pki.write(certs.path())?;
    // The container runs as nobody: the mounted directory must be readable by it.
    std::fs::set_permissions(
        certs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let output = Command::new("docker")
        .args([
            "run",
            "-d",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        ])
        .args(["--label", plx_testkit::LABEL, "-p", "127.0.0.1::8443"])
        .arg("-v")
        .arg(format!("{}:/certs:ro", certs.path().display()))
        .args([
            IMAGE,
            "serve",
            "--no-cluster",
            "--cert",
            "/certs/tls.crt",
            "--key",
            "/certs/tls.key",
        ])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let container = Container(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let user = Command::new("docker")
        .args(["inspect", "--format", "{{.Config.User}}", &container.0])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65534:65534");
    let port = Command::new("docker")
        .args(["port", &container.0, "8443/tcp"])
        .output()?;
    let port = String::from_utf8_lossy(&port.stdout);
    let port = port
        .trim()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let client = support::https(&pki.ca_pem);
    let url = format!("https://localhost:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client
        .get(&format!("{url}/readyz"))
        .await
        .map(|(status, _)| status)
        .ok()
        != Some(200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let configmap = support::kubectl_configmap(
        "polyaxon-polyaxon-config",
        &[(
            "POLYAXON_AGENT_CONNECTIONS",
            r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"gs://bucket/p"},"secret":{"name":"s3-secret"}}]"#,
        )],
    );
    let review = support::admission_review("img-1", &configmap, "CREATE", false);
    let (status, body) = client
        .post(
            &format!("{url}/validate"),
            "application/json",
            review.to_string().into_bytes(),
        )
        .await?;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert_eq!(
        body["response"]["status"]["details"]["causes"][0]["reason"],
        "bucket-scheme-mismatch"
    );
    let stopped = Command::new("docker")
        .args(["stop", "--time", "20", &container.0])
        .output()?;
    assert!(stopped.status.success());
    let code = Command::new("docker")
        .args(["inspect", "--format", "{{.State.ExitCode}}", &container.0])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "SIGTERM must end in a clean exit"
    );
    Ok(())
}
