//! `plx-init check` and `plx-init env` against a real S3 server, as a user runs them.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use plx_testkit::{S3Server, TlsProxy};

const BUCKET: &str = "datasets";
/// Planted in every run; must never be printed.
const SESSION_TOKEN: &str = "planted-session-token-0d9c2f";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn plx_init(args: &[&str], vars: &[(&str, &str)]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PLX_LOG", "trace")
        .envs(vars.iter().copied())
        .output()
        .expect("plx-init runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn catalog(dir: &Path, endpoint: &str, bucket: &str) -> PathBuf {
    let path = dir.join(format!(
        "catalog-{}.yaml",
        endpoint.replace([':', '/'], "_")
    ));
    let text = format!(
        "connections:\n- name: data\n  kind: s3\n  schema: {{bucket: 's3://{bucket}/v1'}}\n  secret: {{name: s3-secret}}\n  env: {{AWS_ENDPOINT_URL: '{endpoint}'}}\n"
    );
    std::fs::write(&path, text).expect("write catalog");
    path
}

async fn seeded() -> anyhow::Result<S3Server> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server
        .seed(
            BUCKET,
            &[("v1/train/a.csv", b"a\n"), ("v1/labels.csv", b"x\n")],
        )
        .await?;
    Ok(server)
}

fn check(server: &S3Server, catalog: &Path, secret: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "check",
        "data",
        "--catalog",
        catalog.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    let run = plx_init(
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", &server.access_key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ],
    );
    // Whatever happened, no secret is printed or logged.
    for planted in [secret, SESSION_TOKEN, &server.secret_key] {
        assert!(
            !run.stdout.contains(planted) && !run.stderr.contains(planted),
            "a secret leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_sources_and_a_verdict() -> anyhow::Result<()> {
    let server = seeded().await?;
    let dir = tempfile::tempdir()?;
    let run = check(
        &server,
        &catalog(dir.path(), &server.endpoint, BUCKET),
        &server.secret_key,
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("connection data: credentials from static keys"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("AWS_SECRET_ACCESS_KEY")
                && line.contains("<redacted>")
                && line.contains("(env AWS_SECRET_ACCESS_KEY)")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("AWS_ENDPOINT_URL") && line.contains("(connection env)")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("ok: s3://datasets/v1 is reachable and holds 2 objects\n"),
        "{}",
        run.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_each_failure_and_exits_1() -> anyhow::Result<()> {
    let server = seeded().await?;
    let dir = tempfile::tempdir()?;
    let good = catalog(dir.path(), &server.endpoint, BUCKET);

    let run = check(&server, &good, "wrong-secret-value", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("failed: access to bucket `datasets` denied (403)")
            || run.stdout.contains("SignatureDoesNotMatch"),
        "{}",
        run.stdout
    );

    let run = check(
        &server,
        &catalog(dir.path(), &server.endpoint, "no-such-bucket"),
        &server.secret_key,
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("failed: bucket `no-such-bucket` does not exist"),
        "{}",
        run.stdout
    );

    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let run = check(
        &server,
        &catalog(dir.path(), &format!("http://127.0.0.1:{closed}"), BUCKET),
        &server.secret_key,
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("(connection refused): check AWS_ENDPOINT_URL"),
        "{}",
        run.stdout
    );

    let proxy = TlsProxy::start(([127, 0, 0, 1], server.port).into()).await?;
    let run = check(
        &server,
        &catalog(dir.path(), &proxy.endpoint(), BUCKET),
        &server.secret_key,
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("failed: TLS failure"), "{}", run.stdout);

    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_port = silent.local_addr()?.port();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let run = check(
        &server,
        &catalog(
            dir.path(),
            &format!("http://127.0.0.1:{silent_port}"),
            BUCKET,
        ),
        &server.secret_key,
        &["--timeout", "2"],
    );
    keep.abort();
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("failed: timed out after 2 s"),
        "{}",
        run.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = catalog(dir.path(), "http://127.0.0.1:1", BUCKET);
    let run = plx_init(
        &[
            "check",
            "nope",
            "--catalog",
            path.to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("no connection named `nope` in the catalog; known: data"),
        "{}",
        run.stderr
    );
    let run = plx_init(&["check", "data"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("POLYAXON_CONNECTIONS_CATALOG is not set"),
        "{}",
        run.stderr
    );
    let run = plx_init(
        &[
            "check",
            "data",
            "--catalog",
            path.to_str().unwrap_or_default(),
        ],
        &[("AWS_ACCESS_KEY_ID", "only-the-id")],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_pod_catalog_variable() -> anyhow::Result<()> {
    let server = seeded().await?;
    let catalog = format!(
        "{{\"connections\":[{{\"name\":\"data\",\"kind\":\"s3\",\"schema\":{{\"bucket\":\"s3://{BUCKET}/v1\"}},\"secret\":{{\"name\":\"s3-secret\"}},\"env\":{{\"AWS_ENDPOINT_URL\":\"{}\"}}}}]}}",
        server.endpoint
    );
    let run = plx_init(
        &["check", "data"],
        &[
            ("POLYAXON_CONNECTIONS_CATALOG", &catalog),
            ("AWS_ACCESS_KEY_ID", &server.access_key),
            ("AWS_SECRET_ACCESS_KEY", &server.secret_key),
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_profile_is_used_by_the_aws_cli() -> anyhow::Result<()> {
    let server = seeded().await?;
    let dir = tempfile::tempdir()?;
    let aws_dir = dir.path().join("aws");
    let path = catalog(dir.path(), &server.endpoint, BUCKET);
    let keys = [
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
    ];
    let run = plx_init(
        &[
            "env",
            "data",
            "--catalog",
            path.to_str().unwrap_or_default(),
            "--dir",
            aws_dir.to_str().unwrap_or_default(),
            "--export",
        ],
        &keys,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stdout.contains(&server.secret_key) && !run.stderr.contains(&server.secret_key),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("export AWS_PROFILE='data'"),
        "{}",
        run.stdout
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(aws_dir.join("credentials"))?
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let aws = std::env::var_os("PLX_AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| plx_testkit::workspace_root().join("target/plx-tools/bin/aws"));
    let output = Command::new(&aws)
        .args(["s3", "ls", "--recursive", &format!("s3://{BUCKET}/v1/")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_CONFIG_FILE", aws_dir.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", aws_dir.join("credentials"))
        .env("AWS_PROFILE", "data")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .map_err(|error| {
            anyhow::format_err!(
                "cannot run {} (run `cargo xtask test`, which installs it): {error}",
                aws.display()
            )
        })?;
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        listing.contains("v1/labels.csv") && listing.contains("v1/train/a.csv"),
        "{listing}"
    );
    Ok(())
}

#[test]
fn check_reads_the_mount_of_host_path_and_volume_claim_connections() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("train"))?;
    std::fs::write(data.join("labels.csv"), "x\n")?;
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let path = dir.path().join("catalog.json");
    let catalog = serde_json::json!({"connections": [
        {"name": "claim", "kind": "volume_claim", "schema": {"volumeClaim": "shared", "mountPath": data}},
        {"name": "node", "kind": "host_path", "schema": {"hostPath": "/var/cache", "mountPath": empty}},
        {"name": "unmounted", "kind": "volume_claim", "schema": {"volumeClaim": "gone", "mountPath": dir.path().join("missing")}},
        {"name": "gcs-data", "kind": "gcs", "schema": {"bucket": "gs://bucket"}},
    ]});
    std::fs::write(&path, catalog.to_string())?;
    let catalog = path.to_str().unwrap_or_default();
    let run = plx_init(&["check", "claim", "--catalog", catalog], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("volume claim `shared` at"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("is mounted and holds 2 entries"),
        "{}",
        run.stdout
    );
    let run = plx_init(&["check", "node", "--catalog", catalog], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("host path /var/cache"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("is mounted and empty"),
        "{}",
        run.stdout
    );
    // A volume the pod does not have is a data failure, not a shrug.
    let run = plx_init(&["check", "unmounted", "--catalog", catalog], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("failed: nothing is mounted at")
            && run.stdout.contains("volume claim `gone`"),
        "{}",
        run.stdout
    );
    let run = plx_init(&["check", "gcs-data", "--catalog", catalog], &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("plx-init checks s3, host_path and volume_claim connections"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_with_env_objects_is_read_though_validate_refuses_it_for_the_agent()
-> anyhow::Result<()> {
    // plx-init reads every `env` form; Polyaxon's agent refuses this one, so `validate` (which
    // judges the file as the agent's catalog) says so while `check` still runs with it.
    let server = seeded().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("catalog.yaml");
    std::fs::write(
        &path,
        format!(
            "connections:\n- name: data\n  kind: s3\n  schema: {{bucket: 's3://{BUCKET}/v1'}}\n  secret: {{name: s3-secret}}\n  env:\n  - {{name: AWS_ENDPOINT_URL, value: '{}'}}\n",
            server.endpoint
        ),
    )?;
    let run = check(&server, &path, &server.secret_key, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let path = path.to_str().unwrap_or_default();
    let run = plx_init(&["validate", path], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("connections/0/env") && out.contains("env-list-for-agent"),
        "{out}"
    );
    Ok(())
}
