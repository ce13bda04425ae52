//! The `plx-webhook` binary: `review FILE` runs the same handler offline, and `serve` finishes
//! the requests in flight when SIGTERM arrives.

use crate::support;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use support::admission_review;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CATALOG: &str = r#"[{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path1"},"secret":{"name":"s3-secret"}},{"name":"s3-dataset1","kind":"s3","schema":{"bucket":"s3://bucket/path2"},"secret":{"name":"s3-secret"}}]"#;

#[test]
fn review_prints_the_response_and_exits_by_verdict() -> anyhow::Result<()> {
    let configmap = support::kubectl_configmap(
        "polyaxon-polyaxon-config",
        &[("POLYAXON_AGENT_CONNECTIONS", CATALOG)],
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("review.json");
    std::fs::write(
        &file,
        admission_review("r1", &configmap, "CREATE", false).to_string(),
    )?;
    let output = Command::new(env!("CARGO_BIN_EXE_plx-webhook"))
        .arg("review")
        .arg(&file)
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(response["response"]["uid"], "r1");
    assert_eq!(
        response["response"]["status"]["details"]["causes"][0]["reason"],
        "duplicate-name"
    );
    // Standard input, and a malformed body.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plx-webhook"))
        .args(["review", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"kind\": 3}")?;
    let output = child.wait_with_output()?;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an AdmissionReview v1 request"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_requests_in_flight() -> anyhow::Result<()> {
    let pki = plx_testkit::Pki::new(&["localhost", "127.0.0.1"])?;
    let dir = tempfile::tempdir()?;
    pki.write(dir.path())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_plx-webhook"))
        .args([
            "serve",
            "--no-cluster",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--key")
        .arg(dir.path().join("tls.key"))
        .kill_on_drop(true)
        .spawn()?;
    let client = support::https(&pki.ca_pem);
    let url = format!("https://localhost:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client.get(&format!("{url}/healthz")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A request in flight: headers and half the body sent, the rest after SIGTERM.
    let configmap = support::kubectl_configmap(
        "polyaxon-polyaxon-config",
        &[("POLYAXON_AGENT_CONNECTIONS", CATALOG)],
    );
    let body = admission_review("inflight", &configmap, "CREATE", false).to_string();
    let mut tls = support::tls_connect(pki.ca_pem.as_bytes(), port, "localhost").await?;
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    tls.write_all(first).await?;
    tls.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = server.id().expect("running");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the old one is still served.
    assert!(client.get(&format!("{url}/healthz")).await.is_err());
    tls.write_all(rest).await?;
    tls.flush().await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"inflight\""), "{answer}");
    assert!(answer.contains("duplicate-name"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}
