//! `plx-init artifacts` and `plx-init initializer path` against a real S3 server, laid out as
//! Polyaxon's converter lays out an init container: the catalog in POLYAXON_CONNECTIONS_CATALOG,
//! the keys in the environment, the context root under POLYAXON_CONTEXT_ROOT.

use std::{path::Path, process::Command};

use plx_testkit::S3Server;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn catalog(server: &S3Server) -> String {
    format!(
        r#"{{"connections":[
            {{"name":"s3-dataset1","kind":"s3","schema":{{"bucket":"s3://datasets/v1"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{0}"}}}},
            {{"name":"store","kind":"s3","schema":{{"bucket":"s3://artifacts"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{0}"}}}},
            {{"name":"db","kind":"postgres"}}]}}"#,
        server.endpoint
    )
}

fn plx_init(server: &S3Server, context: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .args(args)
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog(server))
        .env("POLYAXON_CONTEXT_ROOT", context)
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("plx-init runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn seeded() -> anyhow::Result<S3Server> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    server.create_bucket("artifacts").await?;
    server
        .seed(
            "datasets",
            &[
                ("v1/train/a.csv", b"a"),
                ("v1/train/x/b.csv", b"b"),
                ("v1/labels.csv", b"l"),
                ("v1/meta/m.json", b"m"),
            ],
        )
        .await?;
    server
        .seed("artifacts", &[("outputs/model.bin", b"w")])
        .await?;
    Ok(server)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_land_under_the_connection_directory() -> anyhow::Result<()> {
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    let summary = context.path().join("summary.json");
    let run = plx_init(
        &server,
        context.path(),
        &[
            "artifacts",
            "--connection",
            "s3-dataset1",
            "--dirs",
            "train",
            "--files",
            "labels.csv",
            "--files",
            "meta/m.json:meta.json",
            "--workers",
            "4",
            "--summary",
            summary.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let root = context.path().join("artifacts/s3-dataset1");
    assert_eq!(
        (
            read(&root.join("train/a.csv")),
            read(&root.join("train/x/b.csv")),
            read(&root.join("labels.csv")),
            read(&root.join("meta.json"))
        ),
        ("a".into(), "b".into(), "l".into(), "m".into())
    );
    assert!(
        run.stdout
            .starts_with("s3-dataset1: 4 objects, 4 bytes, 0 skipped, 0 retried into"),
        "{}",
        run.stdout
    );
    // The `--summary` record, read back with its type: the keys it promises are there.
    let records: Vec<plx_transfer::Record> = serde_json::from_str(&read(&summary))?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, plx_transfer::Record::VERSION);
    assert_eq!(records[0].connection, "s3-dataset1");
    assert!(records[0].ok && records[0].failures.is_empty());
    assert_eq!(records[0].summary.objects, 4);
    let raw: serde_json::Value = serde_json::from_str(&read(&summary))?;
    for key in [
        "version",
        "connection",
        "destination",
        "ok",
        "summary",
        "failures",
    ] {
        assert!(raw[0].get(key).is_some(), "{key} missing from {raw}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_file_with_the_store_and_a_custom_path() -> anyhow::Result<()> {
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    let custom = context.path().join("custom");
    let init = context.path().join("init.yaml");
    std::fs::write(
        &init,
        format!(
            "- {{artifacts: {{dirs: [outputs]}}, connection: store}}\n- {{paths: [labels.csv, train], connection: s3-dataset1, path: '{}'}}\n",
            custom.display()
        ),
    )?;
    let run = plx_init(
        &server,
        context.path(),
        &["artifacts", "--init", init.to_str().unwrap_or_default()],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // `store` is a named connection here (the catalog has no artifactsStore), so it gets its own directory.
    assert_eq!(
        read(&context.path().join("artifacts/store/outputs/model.bin")),
        "w"
    );
    assert_eq!(read(&custom.join("labels.csv")), "l");
    assert_eq!(read(&custom.join("train/x/b.csv")), "b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_and_unknown_connections_fail_where_polyaxon_exits_0() -> anyhow::Result<()> {
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    let run = plx_init(
        &server,
        context.path(),
        &[
            "artifacts",
            "--connection",
            "s3-dataset1",
            "--files",
            "nope.csv",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("s3://datasets/v1/nope.csv: does not exist"),
        "{}",
        run.stderr
    );
    assert!(
        !context
            .path()
            .join("artifacts/s3-dataset1/nope.csv")
            .exists()
    );

    let run = plx_init(
        &server,
        context.path(),
        &[
            "artifacts",
            "--connection",
            "s3-dataset9",
            "--dirs",
            "train",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no connection named `s3-dataset9` in the catalog"),
        "{}",
        run.stderr
    );

    let run = plx_init(
        &server,
        context.path(),
        &["artifacts", "--connection", "db"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is of kind postgres"), "{}", run.stderr);

    let init = context.path().join("bad-init.yaml");
    std::fs::write(
        &init,
        "- {artifacts: {files: ['../../etc/passwd']}, connection: s3-dataset1}\n",
    )?;
    let run = plx_init(
        &server,
        context.path(),
        &["artifacts", "--init", init.to_str().unwrap_or_default()],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("path-escape"), "{}", run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initializer_drop_in_takes_polyaxons_flags() -> anyhow::Result<()> {
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    let to = context.path().join("artifacts/s3-dataset1/train");
    let to_text = format!("--path-to={}", to.display());
    let run = plx_init(
        &server,
        context.path(),
        &[
            "initializer",
            "path",
            "--connection-name=s3-dataset1",
            "--connection-kind=s3",
            "--path-from=s3://datasets/v1/train",
            &to_text,
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.trim(),
        format!("s3 path is initialized, path: `{}`", to.display())
    );
    assert_eq!(read(&to.join("x/b.csv")), "b");

    let file = context.path().join("artifacts/s3-dataset1/labels.csv");
    let file_text = format!("--path-to={}", file.display());
    let run = plx_init(
        &server,
        context.path(),
        &[
            "initializer",
            "path",
            "--connection-name=s3-dataset1",
            "--connection-kind=s3",
            "--path-from=s3://datasets/v1/labels.csv",
            &file_text,
            "--is-file",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(read(&file), "l");

    // Polyaxon prints success and downloads nothing for --is-file on a prefix; this fails.
    let run = plx_init(
        &server,
        context.path(),
        &[
            "initializer",
            "path",
            "--connection-name=s3-dataset1",
            "--connection-kind=s3",
            "--path-from=s3://datasets/v1/train",
            &file_text,
            "--is-file",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("is a prefix, not an object"),
        "{}",
        run.stderr
    );

    let check = format!("--path-to={}", context.path().join("checked").display());
    let run = plx_init(
        &server,
        context.path(),
        &[
            "initializer",
            "path",
            "--connection-name=s3-dataset1",
            "--connection-kind=s3",
            "--path-from=s3://datasets/v1/missing",
            &check,
            "--check-path",
            "--raise-errors",
            "--sync-fw",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_logged_as_json_lines_when_not_on_a_terminal() -> anyhow::Result<()> {
    let server = seeded().await?;
    server
        .put("datasets", "v1/big/blob.bin", vec![7u8; 24 * 1024 * 1024])
        .await?;
    let context = tempfile::tempdir()?;
    let run = plx_init(
        &server,
        context.path(),
        &[
            "--log-format",
            "json",
            "artifacts",
            "--connection",
            "s3-dataset1",
            "--dirs",
            "big",
            "--progress-every",
            "0.01",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let pulling = events
        .iter()
        .filter(|event| event["fields"]["message"] == "pulling")
        .count();
    assert!(pulling >= 1, "{}", run.stderr);
    let pulled = events
        .iter()
        .find(|event| event["fields"]["message"] == "pulled")
        .unwrap_or_else(|| panic!("no summary event: {}", run.stderr));
    assert_eq!(pulled["fields"]["objects"], 1);
    assert_eq!(pulled["fields"]["bytes"], 24 * 1024 * 1024);
    assert_eq!(pulled["fields"]["connection"], "s3-dataset1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_bar() -> anyhow::Result<()> {
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    // `script` runs plx-init on a pseudo-terminal, as a person at a shell would.
    let command = format!(
        "{} artifacts --connection s3-dataset1 --dirs train",
        env!("CARGO_BIN_EXE_plx-init")
    );
    let output = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog(&server))
        .env("POLYAXON_CONTEXT_ROOT", context.path())
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TERM", "xterm")
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // The bar (redrawn in place, then cleared) and the final line.
    assert!(text.contains("B/s, "), "no bar in {text:?}");
    assert!(text.contains("\u{1b}["), "{text:?}");
    assert!(text.contains("s3-dataset1: 2 objects, 2 bytes"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_without_credentials_or_a_server_says_why_in_one_sentence() -> anyhow::Result<()> {
    // The SDK's own errors nest Debug dumps (`DispatchFailure(DispatchFailure { source: ...`);
    // a user sees one sentence saying what to do, the same reading `plx-init check` gives.
    let server = seeded().await?;
    let context = tempfile::tempdir()?;
    let run = |vars: &[(&str, &str)], catalog: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
            .args([
                "artifacts",
                "--connection",
                "s3-dataset1",
                "--dirs",
                "train",
            ])
            .env_clear()
            .env("POLYAXON_CONNECTIONS_CATALOG", catalog)
            .env("POLYAXON_CONTEXT_ROOT", context.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(vars.iter().copied())
            .output()
            .expect("plx-init runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[], &catalog(&server));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("listing failed: no credentials: put AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the connection's Secret"),
        "{stderr}"
    );
    // Nothing listening where the endpoint points (the discard port).
    let keys = [
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
        ("AWS_MAX_ATTEMPTS", "1"),
    ];
    let (code, stderr) = run(
        &keys,
        &catalog(&server).replace(&server.endpoint, "http://127.0.0.1:9"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("nothing listens at the store (connection refused): check AWS_ENDPOINT_URL"),
        "{stderr}"
    );
    for out in [&stderr, &run(&[], &catalog(&server)).1] {
        assert!(
            !out.contains("DispatchFailure") && !out.contains("ConnectorError"),
            "{out}"
        );
    }
    Ok(())
}
