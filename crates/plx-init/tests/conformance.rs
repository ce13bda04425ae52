//! The init conformance runner: every case under `conformance/init/` seeds a bucket (and the
//! same files into a mounted directory), runs one `plx-init` command as a Polyaxon init
//! container would, and must give exactly its exit code and tree (and, where the case says,
//! the bucket's objects), and say what it expects.

use std::{collections::BTreeMap, path::Path, process::ExitCode};

use plx_testkit::{S3Server, Tmpfs};
use serde_json::Value;

fn main() -> ExitCode {
    plx_testkit::run_cases("init", run())
}

async fn run() -> anyhow::Result<bool> {
    let cases = plx_testkit::cases("init")?;
    let server = S3Server::start().await?;
    let mut failed = Vec::new();
    for (index, (name, case)) in cases.iter().enumerate() {
        if let Err(problem) = check(&server, &format!("init-{index:03}"), case).await {
            failed.push(format!(
                "{name} ({}): {problem}",
                case["description"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(plx_testkit::report(
        "init",
        &format!("{:?}", server.backend),
        cases.len(),
        &failed,
    ))
}

/// The catalog every case runs against, as the converter puts it in the pod.
fn catalog(server: &S3Server, bucket: &str, mount: &Path, wrong: &Path) -> Value {
    let s3 = |name: &str, path: &str| {
        serde_json::json!({
            "name": name, "kind": "s3",
            "schema": {"bucket": format!("s3://{bucket}{path}")},
            "secret": {"name": "s3-secret"},
            "env": {"AWS_ENDPOINT_URL": server.endpoint, "AWS_REGION": server.region},
        })
    };
    // The converter copies a connection's `env` as written; plx-init reads every form, including
    // the `{name, value}` objects Polyaxon's agent refuses.
    let mut objects = s3("data-env-objects", "/v1");
    objects["env"] = serde_json::json!([
        {"name": "AWS_ENDPOINT_URL", "value": server.endpoint},
        {"name": "AWS_REGION", "value": server.region},
    ]);
    let mut denied = s3("denied", "");
    denied["secret"] = serde_json::json!({"name": "wrong-secret", "mountPath": wrong});
    serde_json::json!({
        "artifactsStore": s3("store", "/store"),
        "connections": [
            s3("data", ""),
            s3("data-v1", "/v1"),
            objects,
            denied,
            {"name": "mount", "kind": "host_path", "schema": {"hostPath": "/srv/data", "mountPath": mount}},
            {"name": "claim", "kind": "volume_claim", "schema": {"volumeClaim": "data", "mountPath": mount}},
            {"name": "gcs-data", "kind": "gcs", "schema": {"bucket": "gs://data"}, "secret": {"name": "gcs-secret"}},
            {"name": "db", "kind": "postgres", "secret": {"name": "db-secret"}},
        ],
    })
}

async fn check(server: &S3Server, bucket: &str, case: &Value) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    // The context volume, on a small tmpfs where the case runs out of room.
    let small = case["room_kib"].as_u64().map(Tmpfs::mount).transpose()?;
    let (context, mount, wrong) = (
        small.as_ref().map_or_else(
            || work.path().join("plx-context"),
            |small| small.path().join("plx-context"),
        ),
        work.path().join("mount"),
        work.path().join("wrong-secret"),
    );
    for dir in [&context, &mount, &wrong] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(wrong.join("AWS_ACCESS_KEY_ID"), "not-a-key")?;
    std::fs::write(wrong.join("AWS_SECRET_ACCESS_KEY"), "not-a-secret")?;
    server.create_bucket(bucket).await?;
    let fill = |text: &str| {
        text.replace("BUCKET", bucket)
            .replace("CONTEXT", &context.display().to_string())
            .replace("MOUNT", &mount.display().to_string())
    };
    for (key, content) in case["objects"].as_object().into_iter().flatten() {
        // Filled too: a manifest seeded for `--pin` names the bucket.
        let content = fill(content.as_str().unwrap_or_default());
        let content = content.as_str();
        server.put(bucket, key, content).await?;
        let file = mount.join(key);
        std::fs::create_dir_all(file.parent().unwrap_or(&mount))?;
        std::fs::write(file, content)?;
    }
    for (index, (key, size)) in case["generated"]
        .as_object()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let body = plx_testkit::bytes(index as u64 + 1, size.as_u64().unwrap_or_default() as usize);
        server.put(bucket, key, body.clone()).await?;
        let file = mount.join(key);
        std::fs::create_dir_all(file.parent().unwrap_or(&mount))?;
        std::fs::write(file, body)?;
    }
    let mut args: Vec<String> = case["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(fill)
        .collect();
    if let Some(init) = case.get("init") {
        let file = work.path().join("init.yaml");
        std::fs::write(&file, fill(&serde_yaml::to_string(init)?))?;
        args = vec![
            "artifacts".to_owned(),
            "--init".to_owned(),
            file.display().to_string(),
        ];
    }
    // Polyaxon's generated commands reach the binary as `polyaxon` (a link in the images).
    let program = match case["program"].as_str() {
        Some("polyaxon") => {
            let link = work.path().join("polyaxon");
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_plx-init"), &link)?;
            link
        }
        _ => std::path::PathBuf::from(env!("CARGO_BIN_EXE_plx-init")),
    };
    let output = tokio::process::Command::new(program)
        .args(&args)
        .env_clear()
        .env(
            "POLYAXON_CONNECTIONS_CATALOG",
            catalog(server, bucket, &mount, &wrong).to_string(),
        )
        .env("POLYAXON_CONTEXT_ROOT", &context)
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let expect = &case["expect"];
    let code = output.status.code().unwrap_or(-1);
    if Some(i64::from(code)) != expect["exit"].as_i64() {
        anyhow::bail!(
            "exit {code}, expected {}\nstdout: {stdout}\nstderr: {stderr}",
            expect["exit"]
        );
    }
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for wanted in expect[stream].as_array().into_iter().flatten() {
            let wanted = fill(wanted.as_str().unwrap_or_default());
            if !text.contains(&wanted) {
                anyhow::bail!("{stream} does not say `{wanted}`:\n{text}");
            }
        }
    }
    let landed = tree(&context)?;
    let wanted: BTreeMap<String, String> = expect["tree"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(path, content)| (fill(path), fill(content.as_str().unwrap_or_default())))
        .collect();
    if landed != wanted {
        anyhow::bail!("tree {landed:?}, expected {wanted:?}\nstderr: {stderr}");
    }
    if let Some(expected) = expect.get("bucket") {
        let stored = bucket_contents(server, bucket).await?;
        let wanted: BTreeMap<String, String> = expected
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, content)| (key.clone(), content.as_str().unwrap_or_default().to_owned()))
            .collect();
        if stored != wanted {
            anyhow::bail!("bucket {stored:?}, expected {wanted:?}\nstderr: {stderr}");
        }
    }
    Ok(())
}

/// Every object in `bucket` with its content.
async fn bucket_contents(
    server: &S3Server,
    bucket: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut objects = BTreeMap::new();
    let listed = server
        .client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await?;
    for object in listed.contents() {
        let key = object.key().unwrap_or_default().to_owned();
        let body = plx_testkit::s3::get(&server.client, bucket, &key).await?;
        objects.insert(key, String::from_utf8_lossy(&body).into_owned());
    }
    Ok(objects)
}

/// What landed under `root` (the testkit's walk), as text, with Polyaxon's file-watcher state
/// normalised.
fn tree(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for (path, bytes) in plx_testkit::landed_files(root) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let text = if path == ".fs" || path.ends_with("/.fs") {
            watcher_state(&text)?
        } else {
            text
        };
        files.insert(path, text);
    }
    Ok(files)
}

/// Polyaxon's file-watcher state with each modification time read as MODIFIED (they are the
/// times the files landed); keys, bases, ops and their order stay as written.
fn watcher_state(text: &str) -> anyhow::Result<String> {
    let mut state: Value = serde_json::from_str(text)?;
    for mapping in ["dir_mapping", "file_mapping"] {
        let entries = state.get_mut(mapping).and_then(Value::as_object_mut);
        for entry in entries.into_iter().flatten() {
            entry.1[1] = Value::from("MODIFIED");
        }
    }
    Ok(state.to_string())
}
