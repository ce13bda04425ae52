//! The `plx-init` image (built by `cargo xtask images`) run as Polyaxon runs its init container:
//! on the S3 server's Docker network, the catalog in POLYAXON_CONNECTIONS_CATALOG holding only
//! this connection, the secret mounted as files laid out as the kubelet lays them out, a
//! read-only root filesystem, and the context volume its only writable place.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Output},
};

use plx_testkit::{S3Server, landed_files};

mod deployment;

const IMAGE: &str = concat!("plx-init:", env!("CARGO_PKG_VERSION"));

/// A Secret volume as the kubelet writes it: a timestamped directory, `..data` pointing at it,
/// and one symlink per key through `..data`.
fn secret_volume(dir: &Path, items: &[(&str, &str)]) -> anyhow::Result<()> {
    let stamped = dir.join("..2026_11_25_12_00_00.000000001");
    std::fs::create_dir_all(&stamped)?;
    for (key, value) in items {
        std::fs::write(stamped.join(key), value)?;
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key))?;
    }
    std::os::unix::fs::symlink("..2026_11_25_12_00_00.000000001", dir.join("..data"))?;
    Ok(())
}

struct Pod {
    _work: tempfile::TempDir,
    context: std::path::PathBuf,
    secret: std::path::PathBuf,
    catalog: String,
}

impl Pod {
    async fn new(server: &S3Server, secret: &[(&str, &str)]) -> anyhow::Result<Pod> {
        let work = tempfile::tempdir()?;
        let (context, secret_dir) = (work.path().join("context"), work.path().join("secret"));
        std::fs::create_dir_all(&context)?;
        std::fs::create_dir_all(&secret_dir)?;
        // The context volume is an emptyDir the init container (user 65534) writes to.
        std::fs::set_permissions(
            &context,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        secret_volume(&secret_dir, secret)?;
        let catalog = serde_json::json!({"connections": [{
            "name": "s3-dataset1",
            "kind": "s3",
            "schema": {"bucket": "s3://datasets/v1"},
            "secret": {"name": "s3-secret", "mountPath": "/etc/plx/s3-secret"},
            "env": {"AWS_ENDPOINT_URL": server.bridge_endpoint().await?, "AWS_REGION": "us-east-1"},
        }]})
        .to_string();
        Ok(Pod {
            _work: work,
            context,
            secret: secret_dir,
            catalog,
        })
    }

    /// A pod with the server's own keys in its Secret.
    async fn with_keys(server: &S3Server) -> anyhow::Result<Pod> {
        Pod::new(
            server,
            &[
                ("AWS_ACCESS_KEY_ID", &server.access_key),
                ("AWS_SECRET_ACCESS_KEY", &server.secret_key),
            ],
        )
        .await
    }

    fn run(&self, args: &[&str]) -> Output {
        self.docker(&[]).args(args).output().expect("docker runs")
    }

    /// `script` through the image's `/bin/sh -c`, as Polyaxon's init container runs it.
    fn shell(&self, script: &str) -> Output {
        self.docker(&["--entrypoint", "/bin/sh"])
            .args(["-c", script])
            .output()
            .expect("docker runs")
    }

    fn docker(&self, extra: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .args(["run", "--rm", "--read-only", "--network", "bridge"])
            .args(["--label", plx_testkit::LABEL])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .arg("-e")
            .arg(format!("POLYAXON_CONNECTIONS_CATALOG={}", self.catalog))
            .arg("-v")
            .arg(format!("{}:/plx-context", self.context.display()))
            .arg("-v")
            .arg(format!("{}:/etc/plx/s3-secret:ro", self.secret.display()))
            .args(extra)
            .arg(IMAGE);
        command
    }
}

async fn seeded() -> anyhow::Result<(S3Server, BTreeMap<String, Vec<u8>>)> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    let mut objects = BTreeMap::new();
    objects.insert("train/a.csv".to_owned(), b"a,b\n1,2\n".to_vec());
    objects.insert("train/x/b.bin".to_owned(), (0..=255u8).collect());
    // Large enough to be fetched in parts.
    objects.insert(
        "train/big.bin".to_owned(),
        (0..20 * 1024 * 1024u32)
            .map(|at| (at % 251) as u8)
            .collect(),
    );
    objects.insert("labels.csv".to_owned(), b"cat\ndog\n".to_vec());
    for (key, body) in &objects {
        server
            .put("datasets", &format!("v1/{key}"), body.clone())
            .await?;
    }
    Ok((server, objects))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_pulls_into_the_context_volume_as_an_init_container() -> anyhow::Result<()> {
    let (server, objects) = seeded().await?;
    let pod = Pod::new(
        &server,
        &[
            ("AWS_ACCESS_KEY_ID", &server.access_key),
            ("AWS_SECRET_ACCESS_KEY", &format!("{}\n", server.secret_key)),
        ],
    )
    .await?;
    let output = pod.run(&[
        "artifacts",
        "--connection",
        "s3-dataset1",
        "--dirs",
        "train",
        "--files",
        "labels.csv",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let landed = landed_files(&pod.context.join("artifacts/s3-dataset1"));
    assert_eq!(
        landed.keys().collect::<Vec<_>>(),
        objects.keys().collect::<Vec<_>>()
    );
    assert!(landed == objects, "the bytes differ");
    // Polyaxon's generated command, unchanged, against the same image.
    let output = pod.run(&[
        "initializer",
        "path",
        "--connection-name=s3-dataset1",
        "--connection-kind=s3",
        "--path-from=s3://datasets/v1/labels.csv",
        "--path-to=/plx-context/artifacts/s3-dataset1/copy/labels.csv",
        "--is-file",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(pod.context.join("artifacts/s3-dataset1/copy/labels.csv"))?,
        objects["labels.csv"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_fails_on_missing_data_and_on_wrong_keys() -> anyhow::Result<()> {
    let (server, _) = seeded().await?;
    let pod = Pod::with_keys(&server).await?;
    let output = pod.run(&[
        "artifacts",
        "--connection",
        "s3-dataset1",
        "--files",
        "nope.csv",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("s3://datasets/v1/nope.csv: does not exist"),
        "{stderr}"
    );

    let wrong = Pod::new(
        &server,
        &[
            ("AWS_ACCESS_KEY_ID", &server.access_key),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    )
    .await?;
    let output = wrong.run(&[
        "artifacts",
        "--connection",
        "s3-dataset1",
        "--files",
        "labels.csv",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://datasets/v1/labels.csv"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert!(landed_files(&wrong.context).is_empty());
    Ok(())
}

/// The init script Polyaxon 2.18's converter generates for this connection and entries (its own
/// `get_volume_args`), as the container's `/bin/sh -c` argument.
fn polyaxon_script(catalog: &str, files: &[&str], dirs: &[&str]) -> String {
    let python = plx_testkit::polyaxon_python();
    let program = r#"
import json, sys
from polyaxon._connections import V1Connection
from polyaxon._runner.converter.init.store import get_volume_args
from polyaxon._schemas.types import V1ArtifactsType
connection = V1Connection.from_dict(json.loads(sys.argv[1])["connections"][0])
artifacts = V1ArtifactsType(files=json.loads(sys.argv[2]), dirs=json.loads(sys.argv[3]))
print(get_volume_args(connection, "/plx-context/artifacts/" + connection.name, artifacts, None))
"#;
    let output = Command::new(&python)
        .args(["-c", program, catalog])
        .arg(serde_json::to_string(files).expect("json"))
        .arg(serde_json::to_string(dirs).expect("json"))
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{}: {error}; run the tests with `cargo xtask test`, which installs Polyaxon",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyaxons_generated_init_script_runs_unchanged_and_fails_truthfully() -> anyhow::Result<()>
{
    let (server, objects) = seeded().await?;
    let pod = Pod::with_keys(&server).await?;
    // The container Polyaxon builds: command ["/bin/sh", "-c"], the generated script as args.
    let script = polyaxon_script(&pod.catalog, &["labels.csv"], &["train"]);
    assert!(
        script.contains("polyaxon initializer path --connection-name=s3-dataset1"),
        "{script}"
    );
    let output = pod.shell(&script);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(landed_files(&pod.context.join("artifacts/s3-dataset1")) == objects);
    // A missing file early in the script: Polyaxon's own image goes on and exits with the last
    // step's status (0); this one stops at the failing step, with its exit code.
    let fresh = Pod::with_keys(&server).await?;
    let script = polyaxon_script(&fresh.catalog, &["nope.csv", "labels.csv"], &[]);
    let output = fresh.shell(&script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{script}\n{stderr}");
    assert!(stderr.contains("s3://datasets/v1/nope.csv"), "{stderr}");
    assert!(
        !fresh
            .context
            .join("artifacts/s3-dataset1/labels.csv")
            .exists()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyaxons_own_commands_are_refused_naming_the_image_that_runs_them() -> anyhow::Result<()>
{
    let (server, _) = seeded().await?;
    let pod = Pod::with_keys(&server).await?;
    for (command, named) in [
        (&["initializer", "auth"][..], "polyaxon initializer auth"),
        (
            &["docker", "generate", "--build-context={}"][..],
            "polyaxon docker generate",
        ),
        (
            &[
                "initializer",
                "path",
                "--connection-name=g",
                "--connection-kind=gcs",
                "--path-from=gs://b/a",
                "--path-to=/plx-context/a",
            ][..],
            "polyaxon initializer path",
        ),
    ] {
        let output = pod
            .docker(&["--entrypoint", "/bin/polyaxon"])
            .args(command)
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("`{named}` is Polyaxon's own command")),
            "{stderr}"
        );
        assert!(stderr.contains("plx-init-polyaxon"), "{stderr}");
    }
    Ok(())
}
