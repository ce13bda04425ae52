//! A sweep for leaked secrets: every `plx-init` command, in its success and failure modes, with
//! trace logging on and in both log formats, runs with planted secret values (in the
//! environment, in a mounted secret file, and as a wrong key); none may appear in its standard
//! output, its standard error, its summary file or the files it writes other than the
//! credentials file `env` exists to write.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use plx_testkit::S3Server;

const PLANTED_TOKEN: &str = "planted-session-token-5e1b77";
const WRONG_SECRET: &str = "planted-wrong-secret-key-a90c";

struct Setup {
    server: S3Server,
    dir: tempfile::TempDir,
    catalog: PathBuf,
}

async fn setup() -> anyhow::Result<Setup> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    server
        .seed(
            "datasets",
            &[("v1/a.csv", b"a\n"), ("v1/train/b.csv", b"b\n")],
        )
        .await?;
    let dir = tempfile::tempdir()?;
    // A secret mounted as files, as the kubelet does for `secret.mountPath`.
    let mounted = dir.path().join("secret");
    std::fs::create_dir_all(&mounted)?;
    std::fs::write(mounted.join("AWS_ACCESS_KEY_ID"), &server.access_key)?;
    std::fs::write(mounted.join("AWS_SECRET_ACCESS_KEY"), &server.secret_key)?;
    let catalog = dir.path().join("catalog.json");
    let connections = serde_json::json!({"connections": [
        {"name": "env-keys", "kind": "s3", "schema": {"bucket": "s3://datasets/v1"},
         "secret": {"name": "s3-secret"}, "env": {"AWS_ENDPOINT_URL": server.endpoint}},
        {"name": "mounted-keys", "kind": "s3", "schema": {"bucket": "s3://datasets/v1"},
         "secret": {"name": "s3-secret", "mountPath": mounted},
         "env": {"AWS_ENDPOINT_URL": server.endpoint}},
        {"name": "missing-bucket", "kind": "s3", "schema": {"bucket": "s3://no-such-bucket/v1"},
         "secret": {"name": "s3-secret"}, "env": {"AWS_ENDPOINT_URL": server.endpoint}},
        {"name": "nothing-listens", "kind": "s3", "schema": {"bucket": "s3://datasets/v1"},
         "secret": {"name": "s3-secret"}, "env": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}},
    ]});
    std::fs::write(&catalog, connections.to_string())?;
    Ok(Setup {
        server,
        dir,
        catalog,
    })
}

impl Setup {
    fn planted(&self) -> [&str; 3] {
        [&self.server.secret_key, PLANTED_TOKEN, WRONG_SECRET]
    }

    /// Runs plx-init with the keys in the environment (the right secret, or `secret`), checks
    /// that nothing planted shows, and returns the exit code.
    fn run(&self, args: &[&str], secret: &str) -> i32 {
        let context = self.dir.path().join("context");
        let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
            .args(args)
            .env_clear()
            .env("PLX_LOG", "trace")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POLYAXON_CONTEXT_ROOT", &context)
            .env(
                "POLYAXON_CONNECTIONS_CATALOG",
                std::fs::read_to_string(&self.catalog).unwrap_or_default(),
            )
            .env("AWS_ACCESS_KEY_ID", &self.server.access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_SESSION_TOKEN", PLANTED_TOKEN)
            .output()
            .expect("plx-init runs");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for planted in self.planted() {
            assert!(
                !text.contains(planted),
                "plx-init {args:?} printed a secret:\n{text}"
            );
        }
        // Nor in what it wrote: summaries, the data, the engine's state.
        for file in files(&context) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let content = String::from_utf8_lossy(&bytes);
            for planted in self.planted() {
                assert!(
                    !content.contains(planted),
                    "plx-init {args:?} wrote a secret to {}",
                    file.display()
                );
            }
        }
        output.status.code().unwrap_or(-1)
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_logs_or_writes_a_secret_in_any_mode() -> anyhow::Result<()> {
    let setup = setup().await?;
    let right = setup.server.secret_key.clone();
    let catalog = setup.catalog.to_str().unwrap_or_default().to_owned();
    let summary = setup.dir.path().join("context/summary.json");
    let summary = summary.to_str().unwrap_or_default();
    let mut codes = Vec::new();
    for format in ["text", "json"] {
        let log = ["--log-format", format];
        // validate: a catalog, and a secret written in plain text in a connection's env (a
        // warning that must name the variable, not repeat its value).
        let inline = setup.dir.path().join("inline.yaml");
        std::fs::write(
            &inline,
            format!(
                "- {{name: inline, kind: s3, schema: {{bucket: 's3://datasets/v1'}}, env: {{AWS_SECRET_ACCESS_KEY: '{WRONG_SECRET}', AWS_SESSION_TOKEN: '{PLANTED_TOKEN}'}}}}\n"
            ),
        )?;
        codes.push(setup.run(&[&log[..], &["validate", &catalog]].concat(), &right));
        codes.push(setup.run(
            &[&log[..], &["validate", inline.to_str().unwrap_or_default()]].concat(),
            &right,
        ));
        // check: works (keys from env, from mounted files), wrong key, missing bucket, nothing listening.
        for name in [
            "env-keys",
            "mounted-keys",
            "missing-bucket",
            "nothing-listens",
        ] {
            codes.push(
                setup.run(
                    &[
                        &log[..],
                        &["check", name, "--catalog", &catalog, "--timeout", "3"],
                    ]
                    .concat(),
                    &right,
                ),
            );
        }
        codes.push(setup.run(
            &[&log[..], &["check", "env-keys", "--catalog", &catalog]].concat(),
            WRONG_SECRET,
        ));
        // env: the profile (its credentials file holds the key by design; it is not under the
        // context root this test sweeps) and the export lines.
        let profile = setup.dir.path().join("aws");
        codes.push(
            setup.run(
                &[
                    &log[..],
                    &[
                        "env",
                        "env-keys",
                        "--catalog",
                        &catalog,
                        "--dir",
                        profile.to_str().unwrap_or_default(),
                        "--export",
                    ],
                ]
                .concat(),
                &right,
            ),
        );
        // artifacts: a pull, a missing file, wrong keys, nothing listening; initializer path.
        for (name, secret) in [
            ("env-keys", right.as_str()),
            ("env-keys", WRONG_SECRET),
            ("nothing-listens", right.as_str()),
        ] {
            codes.push(
                setup.run(
                    &[
                        &log[..],
                        &[
                            "artifacts",
                            "--connection",
                            name,
                            "--files",
                            "a.csv",
                            "--dirs",
                            "train",
                            "--summary",
                            summary,
                        ],
                    ]
                    .concat(),
                    secret,
                ),
            );
        }
        codes.push(
            setup.run(
                &[
                    &log[..],
                    &[
                        "artifacts",
                        "--connection",
                        "env-keys",
                        "--files",
                        "nope.csv",
                        "--summary",
                        summary,
                    ],
                ]
                .concat(),
                &right,
            ),
        );
        codes.push(
            setup.run(
                &[
                    &log[..],
                    &[
                        "initializer",
                        "path",
                        "--connection-name=env-keys",
                        "--connection-kind=s3",
                        "--path-from=s3://datasets/v1/nope.csv",
                        "--path-to=/tmp/plx-secrets-test/nope.csv",
                        "--is-file",
                    ],
                ]
                .concat(),
                &right,
            ),
        );
        codes.push(
            setup.run(
                &[
                    &log[..],
                    &[
                        "artifacts",
                        "--connection",
                        "mounted-keys",
                        "--dirs",
                        "train",
                    ],
                ]
                .concat(),
                WRONG_SECRET,
            ),
        );
    }
    // The modes really differ: successes, data failures and configuration failures all ran.
    assert!(codes.contains(&0) && codes.contains(&1), "{codes:?}");
    Ok(())
}
