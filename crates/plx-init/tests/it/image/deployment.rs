//! The init containers Polyaxon 2.18's own converter generates (`conformance/polyaxon_converter.py`,
//! what the agent runs), each run as the kubelet runs it: its command, args and env, its volumes
//! (emptyDirs shared by the pod's containers, Secrets laid out as the kubelet lays them out, host
//! paths), one after the other until one fails. Every pod runs twice: with the images as
//! generated (`init.image: plx-init-polyaxon`, the layered image; a per-entry override as written)
//! and with every init image replaced by the stand-in for Polyaxon's own init image. Exit codes,
//! the landed tree and the file-watcher state must match, except where plx-init is deliberately
//! stricter (`conformance/DIVERGENCES.md`), which each test states.
//!
//! The S3 store is moto on a loopback port (s3s-fs answers 500 to a HEAD on a prefix, and
//! Polyaxon's s3fs then fetches nothing); containers that pull from it use the host's network,
//! every other one has none, so nothing leaves the machine.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use plx_testkit::Moto;
use serde_json::{Value, json};

const LAYERED: &str = "plx-init-polyaxon:2.18.0";
const ORIGINAL: &str = "plx-test/polyaxon-init:2.18.0";
const SCRATCH: &str = concat!("plx-init:", env!("CARGO_PKG_VERSION"));
const UUID: &str = "8aac02e8bf3545e5a2a8d6b0f7a1f3a1";
const SECRET: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "plxdeploymentkey"),
    ("AWS_SECRET_ACCESS_KEY", "plxdeploymentsecret"),
];

/// Which images a pod runs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Images {
    /// As the converter generated them.
    Generated,
    /// Every init container on the stand-in for Polyaxon's init image.
    Polyaxon,
}

/// A Polyaxon deployment: the store and data buckets on moto, a host path store and data mount,
/// the agent config that names them.
struct Deployment {
    moto: Moto,
    client: aws_sdk_s3::Client,
    work: tempfile::TempDir,
}

/// What one pod's init containers did.
#[derive(Debug)]
struct Outcome {
    /// Each container run, by name, with its exit code.
    exits: Vec<(String, i32)>,
    /// Every file under the context volume but the file-watcher state and plx-init's own state.
    tree: BTreeMap<String, Vec<u8>>,
    /// `<context>/artifacts/.fs`.
    fs: Option<Value>,
    /// Where plx-init's own state landed (it lands only where plx-init pulled).
    plx_state: Vec<String>,
    context: PathBuf,
    logs: String,
    _pod: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> anyhow::Result<Deployment> {
        let moto = Moto::start().await?;
        let client = plx_testkit::client_for(&moto.endpoint, "us-east-1", SECRET[0].1, SECRET[1].1);
        for bucket in ["runs", "datasets"] {
            client.create_bucket().bucket(bucket).send().await?;
        }
        let deployment = Deployment {
            moto,
            client,
            work: tempfile::tempdir()?,
        };
        deployment
            .seed(
                "datasets",
                &[
                    ("v1/labels.csv", "cat\ndog\n"),
                    ("v1/train/a.csv", "a,b\n1,2\n"),
                    ("v1/train/x/b.csv", "b\n"),
                    ("v1/meta/m.json", "{}"),
                ],
            )
            .await?;
        for (path, content) in [
            ("labels.csv", "cat\n"),
            ("train/a.csv", "a\n"),
            ("train/x/b.csv", "b\n"),
        ] {
            let file = deployment.data_mount().join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(Path::new("/")))?;
            std::fs::write(file, content)?;
        }
        std::fs::create_dir_all(deployment.store_mount())?;
        Ok(deployment)
    }

    async fn seed(&self, bucket: &str, objects: &[(&str, &str)]) -> anyhow::Result<()> {
        for (key, body) in objects {
            self.client
                .put_object()
                .bucket(bucket)
                .key(*key)
                .body(body.as_bytes().to_vec().into())
                .send()
                .await?;
        }
        Ok(())
    }

    fn data_mount(&self) -> PathBuf {
        self.work.path().join("srv/data")
    }

    fn store_mount(&self) -> PathBuf {
        self.work.path().join("srv/runs")
    }

    fn s3(&self, name: &str, bucket: &str, mount: Option<&str>) -> Value {
        let mut secret = json!({"name": "s3-secret"});
        if let Some(mount) = mount {
            secret["mountPath"] = json!(mount);
        }
        json!({
            "name": name, "kind": "s3", "schema": {"bucket": bucket}, "secret": secret,
            "env": {"AWS_ENDPOINT_URL": self.moto.endpoint, "AWS_REGION": "us-east-1"},
        })
    }

    /// The agent config, as Polyaxon's chart renders it into the agent's ConfigMap, with
    /// `init.image` set to the layered image's repository (Polyaxon appends its version).
    fn agent(&self, store: &str) -> Value {
        let store = match store {
            "s3" => self.s3("store", "s3://runs", None),
            _ => json!({"name": "store", "kind": "host_path",
                        "schema": {"hostPath": "/srv/runs", "mountPath": "/plx-store"}}),
        };
        json!({
            "namespace": "polyaxon",
            "init": {"image": "plx-init-polyaxon", "imagePullPolicy": "IfNotPresent"},
            "artifactsStore": store,
            "connections": [
                self.s3("data", "s3://datasets/v1", Some("/etc/plx/s3")),
                {"name": "mount", "kind": "host_path", "schema": {"hostPath": "/srv/data", "mountPath": "/data"}},
                {"name": "claim", "kind": "volume_claim", "schema": {"volumeClaim": "data-claim", "mountPath": "/claim"}},
                {"name": "gdata", "kind": "gcs", "schema": {"bucket": "gs://datasets/v1"}, "secret": {"name": "gcs-secret", "mountPath": "/etc/plx/gcs"}},
                {"name": "wdata", "kind": "wasb", "schema": {"bucket": "wasbs://datasets@account.blob.core.windows.net/v1"}, "secret": {"name": "azure-secret"}},
                {"name": "repo", "kind": "git", "schema": {"url": "https://github.com/polyaxon/polyaxon", "revision": "main"}},
            ],
        })
    }

    /// The init containers and volumes Polyaxon's converter generates for `run` (a job's
    /// `run` section) with `plugins`.
    fn generate(&self, store: &str, plugins: Value, run: Value) -> (Vec<Value>, Vec<Value>) {
        let mut run = run;
        run["kind"] = json!("job");
        run["container"] = json!({"image": "busybox", "command": ["true"]});
        let case = json!({
            "uuid": UUID,
            "agent": self.agent(store),
            "operation": {"version": 1.1, "kind": "compiled_operation", "plugins": plugins, "run": run},
        });
        let generated = plx_testkit::polyaxon_converter(&case).expect("Polyaxon's converter runs");
        let list = |field: &str| generated[field].as_array().cloned().unwrap_or_default();
        (list("initContainers"), list("volumes"))
    }

    /// Runs the pod's init containers in order, as the kubelet does, until one fails.
    fn run(
        &self,
        containers: &[Value],
        volumes: &[Value],
        images: Images,
    ) -> anyhow::Result<Outcome> {
        let pod = tempfile::tempdir()?;
        let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut empty_dirs = Vec::new();
        for volume in volumes {
            let name = volume["name"].as_str().unwrap_or_default().to_owned();
            let dir = if let Some(path) = volume["hostPath"]["path"].as_str() {
                match path {
                    "/srv/data" => self.data_mount(),
                    "/srv/runs" => self.store_mount(),
                    "/var/cache/plx" => {
                        let dir = self.work.path().join("var/cache/plx");
                        std::fs::create_dir_all(&dir)?;
                        std::fs::set_permissions(
                            &dir,
                            std::os::unix::fs::PermissionsExt::from_mode(0o777),
                        )?;
                        dir
                    }
                    other => anyhow::bail!("no host path {other} in this deployment"),
                }
            } else if volume.get("persistentVolumeClaim").is_some() {
                self.data_mount()
            } else if volume.get("secret").is_some() {
                let dir = pod.path().join("secrets").join(&name);
                super::secret_volume(&dir, &SECRET)?;
                dir
            } else {
                // emptyDir (and anything else): a fresh directory every container of the pod shares.
                empty_dirs.push(name.clone());
                let dir = pod.path().join("volumes").join(&name);
                std::fs::create_dir_all(&dir)?;
                std::fs::set_permissions(
                    &dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o777),
                )?;
                dir
            };
            mounts.insert(name, dir);
        }
        let mut outcome = Outcome {
            exits: Vec::new(),
            tree: BTreeMap::new(),
            fs: None,
            plx_state: Vec::new(),
            context: mounts.get("artifacts-context").cloned().unwrap_or_default(),
            logs: String::new(),
            _pod: pod,
        };
        for container in containers {
            let output = self.docker(container, &mounts, images)?;
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let code = output.status.code().unwrap_or(-1);
            outcome.logs.push_str(&format!(
                "--- {name} ({}): exit {code}\n{}{}",
                image(container, images),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
            outcome.exits.push((name, code));
            if code != 0 {
                break;
            }
        }
        // What landed in the pod's volumes: the context volume's files by their path in it, every
        // other emptyDir's (an entry's own `path` gets one) under the volume's name.
        let mut landed = plx_testkit::all_files(&outcome.context);
        for name in empty_dirs
            .iter()
            .filter(|name| *name != "artifacts-context")
        {
            for (path, bytes) in plx_testkit::all_files(&mounts[name]) {
                landed.insert(format!("{name}/{path}"), bytes);
            }
        }
        for (path, bytes) in landed {
            if path
                .split('/')
                .any(|segment| segment.starts_with(".plx-transfer"))
            {
                outcome.plx_state.push(path);
            } else if path == ".fs" {
                outcome.fs = Some(serde_json::from_slice(&bytes)?);
            } else {
                outcome.tree.insert(path, bytes);
            }
        }
        Ok(outcome)
    }

    fn docker(
        &self,
        container: &Value,
        mounts: &BTreeMap<String, PathBuf>,
        images: Images,
    ) -> anyhow::Result<std::process::Output> {
        let mut command = Command::new("docker");
        command.args(["run", "--rm", "--label", plx_testkit::LABEL]);
        let env = container_env(container);
        // Only a container that reaches the S3 store gets a network: the host's, where moto
        // listens on loopback. Nothing else may leave the machine.
        let s3 = env.iter().any(|(name, value)| {
            name == "POLYAXON_CONNECTIONS_CATALOG" && value.contains("\"kind\":\"s3\"")
        });
        command.args(["--network", if s3 { "host" } else { "none" }]);
        for (name, value) in env {
            command.arg("-e").arg(format!("{name}={value}"));
        }
        // Never a metadata service: the keys come from the Secret.
        command.args(["-e", "AWS_EC2_METADATA_DISABLED=true"]);
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let name = mount["name"].as_str().unwrap_or_default();
            let source = mounts
                .get(name)
                .ok_or_else(|| anyhow::format_err!("no volume {name}"))?;
            let read_only = if mount["readOnly"] == json!(true) {
                ":ro"
            } else {
                ""
            };
            command.arg("-v").arg(format!(
                "{}:{}{read_only}",
                source.display(),
                mount["mountPath"].as_str().unwrap_or_default()
            ));
        }
        if let Some(dir) = container["workingDir"].as_str() {
            command.args(["-w", dir]);
        }
        let words = |field: &str| -> Vec<String> {
            container[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let (entrypoint, args) = (words("command"), words("args"));
        if let Some(first) = entrypoint.first() {
            command.args(["--entrypoint", first]);
        }
        command.arg(image(container, images));
        command.args(entrypoint.iter().skip(1)).args(args);
        Ok(command.output()?)
    }

    /// Polyaxon's own `sync_file_watcher` on what landed in `outcome`'s context: the oracle for
    /// the file-watcher state plx-init wrote.
    fn polyaxons_fs(&self, outcome: &Outcome, path: &str) -> anyhow::Result<Value> {
        let program = "import sys\nfrom polyaxon._fs.watcher import FSWatcher\nfw = FSWatcher()\nfw.sync(sys.argv[1])\nprint(fw.to_json())";
        let output = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--label",
                plx_testkit::LABEL,
            ])
            .arg("-v")
            .arg(format!(
                "{}:/plx-context/artifacts:ro",
                outcome.context.display()
            ))
            .args([ORIGINAL, "python3", "-c", program, path])
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

fn image(container: &Value, images: Images) -> String {
    match images {
        Images::Generated => container["image"].as_str().unwrap_or_default().to_owned(),
        Images::Polyaxon => ORIGINAL.to_owned(),
    }
}

/// The container's environment as the kubelet resolves it: values, the pod's fields, and the
/// Secret's keys (`secretKeyRef`, `envFrom`).
fn container_env(container: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if source.get("secretRef").is_some() {
            env.extend(
                SECRET
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "spec.nodeName" => "node-1",
                "metadata.namespace" => "polyaxon",
                _ => "plx-run-pod",
            }
            .to_owned()
        } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
            SECRET
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
                .unwrap_or_default()
        } else {
            continue;
        };
        env.push((name, value));
    }
    env
}

/// The file-watcher state without its times: which paths, from which base, with which op.
fn shape(fs: &Value) -> Value {
    let mut shape = fs.clone();
    for mapping in ["dir_mapping", "file_mapping"] {
        if let Some(entries) = shape.get_mut(mapping).and_then(Value::as_object_mut) {
            for entry in entries.values_mut() {
                entry[1] = json!("<modified>");
            }
        }
    }
    shape
}

fn names(outcome: &Outcome) -> Vec<&str> {
    outcome
        .exits
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Both runs of one pod, compared: the same containers ran with the same exit codes, the same
/// tree landed and the same file-watcher state (times aside) was written.
fn same(ours: &Outcome, polyaxon: &Outcome) {
    assert_eq!(
        ours.exits, polyaxon.exits,
        "exit codes differ\nplx-init:\n{}\nPolyaxon:\n{}",
        ours.logs, polyaxon.logs
    );
    assert_eq!(
        ours.tree.keys().collect::<Vec<_>>(),
        polyaxon.tree.keys().collect::<Vec<_>>(),
        "the trees differ\nplx-init:\n{}\nPolyaxon:\n{}",
        ours.logs,
        polyaxon.logs
    );
    assert!(ours.tree == polyaxon.tree, "the bytes differ");
    // Where Polyaxon wrote no state (a new run's restore, see the test), plx-init's is checked
    // against Polyaxon's own `sync_file_watcher` instead.
    if polyaxon.fs.is_some() {
        assert_eq!(
            ours.fs.as_ref().map(shape),
            polyaxon.fs.as_ref().map(shape),
            "the file-watcher states differ"
        );
    }
}

fn plugins(auto_resume: bool) -> Value {
    json!({"auth": false, "collectArtifacts": true, "autoResume": auto_resume, "collectLogs": false})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_entries_and_a_new_runs_restore_match_polyaxon_and_go_through_plx_init()
-> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let (containers, volumes) = deployment.generate(
        "s3",
        plugins(true),
        json!({"connections": ["data"], "init": [
            {"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "data"},
            {"paths": ["meta/m.json", "train/x"], "connection": "data", "path": "/plx-context/artifacts/picked"},
        ]}),
    );
    assert!(
        containers.iter().all(|c| c["image"] == json!(LAYERED)),
        "{containers:?}"
    );
    let ours = deployment.run(&containers, &volumes, Images::Generated)?;
    let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
    same(&ours, &polyaxon);
    assert_eq!(names(&ours).len(), 3, "{}", ours.logs);
    assert!(
        ours.exits.iter().all(|(_, code)| *code == 0),
        "{}",
        ours.logs
    );
    for landed in ["data/labels.csv", "data/train/a.csv", "data/train/x/b.csv"] {
        assert!(
            ours.tree.contains_key(landed),
            "{landed} missing: {:?}",
            ours.tree.keys()
        );
    }
    // An entry's own `path` is a volume of its own, mounted there.
    for landed in ["/meta/m.json", "/train/x/b.csv"] {
        assert!(
            ours.tree
                .keys()
                .any(|path| path.starts_with("connections-context-") && path.ends_with(landed)),
            "{landed} missing: {:?}",
            ours.tree.keys()
        );
    }
    // The pulls went through plx-init: its state lands beside each tree it pulled (not in it),
    // and Polyaxon's s3fs writes no such file.
    assert!(
        ours.plx_state
            .iter()
            .any(|path| path.starts_with(".plx-transfer/data/")),
        "{:?}",
        ours.plx_state
    );
    assert!(polyaxon.plx_state.is_empty(), "{:?}", polyaxon.plx_state);
    // A new run: nothing under its prefix to restore. Polyaxon's download raises, it swallows
    // that and writes no state; plx-init writes the state of the tree that is there (the
    // `outputs` directory the script made), exactly as Polyaxon's `sync_file_watcher` would
    // (DIVERGENCES.md).
    assert_eq!(polyaxon.fs, None, "{}", polyaxon.logs);
    let fs = ours.fs.clone().expect("the state is written");
    assert_eq!(
        fs,
        deployment.polyaxons_fs(&ours, &format!("/plx-context/artifacts/{UUID}"))?
    );
    assert_eq!(
        fs["dir_mapping"]
            .as_object()
            .map(|dirs| dirs.keys().cloned().collect::<Vec<_>>()),
        Some(vec![format!("{UUID}/outputs")]),
        "{fs}"
    );
    assert!(fs.get("file_mapping").is_none(), "{fs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_runs_outputs_are_restored_with_polyaxons_file_watcher_state()
-> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    deployment
        .seed(
            "runs",
            &[
                (&format!("{UUID}/outputs/model.bin"), "weights"),
                (&format!("{UUID}/outputs/logs/epoch-1.txt"), "loss 0.5"),
                (&format!("{UUID}/events/metric/loss.plx"), "0.5"),
            ],
        )
        .await?;
    let (containers, volumes) = deployment.generate("s3", plugins(true), json!({}));
    let ours = deployment.run(&containers, &volumes, Images::Generated)?;
    let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
    same(&ours, &polyaxon);
    assert!(
        ours.tree
            .contains_key(&format!("{UUID}/outputs/logs/epoch-1.txt")),
        "{}",
        ours.logs
    );
    assert!(
        !ours.plx_state.is_empty(),
        "plx-init did not pull: {}",
        ours.logs
    );
    // Exactly what Polyaxon's own sync_file_watcher writes for the tree that landed.
    let fs = ours.fs.clone().expect("the state is written");
    assert_eq!(
        fs,
        deployment.polyaxons_fs(&ours, &format!("/plx-context/artifacts/{UUID}"))?
    );
    let files = fs["file_mapping"].as_object().expect("files");
    assert!(
        files.contains_key(&format!("{UUID}/outputs/model.bin")),
        "{fs}"
    );
    // The engine's own state and temporaries are not the run's outputs.
    assert!(
        files
            .keys()
            .all(|key| !key.contains(".plx-transfer") && !key.contains(".plx-part")),
        "{fs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_entries_and_a_host_path_store_match_polyaxon() -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let run = json!({"init": [
        {"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "mount"},
        {"artifacts": {"dirs": ["train/x"]}, "connection": "claim"},
    ]});
    // A new run, then a resumed one: the store holds the run's outputs.
    for resumed in [false, true] {
        if resumed {
            let outputs = deployment.store_mount().join(UUID).join("outputs");
            std::fs::create_dir_all(&outputs)?;
            std::fs::write(outputs.join("model.bin"), "weights")?;
        }
        let (containers, volumes) = deployment.generate("host_path", plugins(true), run.clone());
        let ours = deployment.run(&containers, &volumes, Images::Generated)?;
        let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
        same(&ours, &polyaxon);
        assert!(
            ours.exits.iter().all(|(_, code)| *code == 0),
            "{}",
            ours.logs
        );
        assert!(
            ours.tree.contains_key("mount/train/x/b.csv"),
            "{:?}",
            ours.tree.keys()
        );
        if resumed {
            // `initializer fswatch` after the shell's `cp -R`, run by plx-init itself.
            let fs = ours.fs.clone().expect("the state is written");
            assert_eq!(
                fs,
                deployment.polyaxons_fs(&ours, &format!("/plx-context/artifacts/{UUID}"))?
            );
        } else {
            assert_eq!(ours.fs, None);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyaxons_own_commands_run_unchanged_in_the_layered_image() -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let (mut auth, mut tools) = (plugins(false), plugins(false));
    auth["auth"] = json!(true);
    tools["tmux"] = json!(true);
    // Each in a pod of its own: the kubelet stops at the first failing init container, and
    // some of these fail in both images here (no API server, no GCS, no Azure, no GitHub).
    let pods = [
        (auth, json!({})),
        (tools, json!({})),
        (
            plugins(false),
            json!({"init": [{"file": {"filename": "hello.txt", "content": "hi"}}]}),
        ),
        (
            plugins(false),
            json!({"init": [{"dockerfile": {"image": "busybox", "run": ["echo hi"]}}]}),
        ),
        (
            plugins(false),
            json!({"init": [{"tensorboard": {"uuids": ["0aac02e8bf3545e5a2a8d6b0f7a1f3a1"]}}]}),
        ),
        (plugins(false), json!({"init": [{"connection": "repo"}]})),
        (
            plugins(false),
            json!({"init": [{"artifacts": {"files": ["a.csv"]}, "connection": "gdata"}]}),
        ),
        (
            plugins(false),
            json!({"init": [{"artifacts": {"dirs": ["train"]}, "connection": "wdata"}]}),
        ),
    ];
    let mut seen = Vec::new();
    for (plugins, run) in pods {
        let (containers, volumes) = deployment.generate("s3", plugins, run);
        let ours = deployment.run(&containers, &volumes, Images::Generated)?;
        let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
        same(&ours, &polyaxon);
        assert!(ours.plx_state.is_empty(), "{}", ours.logs);
        seen.extend(ours.exits.iter().map(|(name, _)| name.clone()));
    }
    // Every kind of container ran, in the layered image, as it runs in Polyaxon's.
    for kind in [
        "auth",
        "tools",
        "file",
        "dockerfile",
        "tb",
        "git",
        "artifacts-gdata",
        "artifacts-wdata",
    ] {
        assert!(
            seen.iter()
                .any(|name| name.starts_with(&format!("polyaxon-init-{kind}"))),
            "no {kind} container ran: {seen:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_fails_the_layered_image_where_polyaxon_starts_the_job() -> anyhow::Result<()>
{
    let deployment = Deployment::start().await?;
    let (containers, volumes) = deployment.generate(
        "s3",
        plugins(false),
        json!({"init": [{"artifacts": {"files": ["nope.csv", "labels.csv"]}, "connection": "data"}]}),
    );
    let ours = deployment.run(&containers, &volumes, Images::Generated)?;
    let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
    // Deliberately stricter (DIVERGENCES.md): Polyaxon logs the error at debug level and exits
    // 0; the layered image stops at the failing step with exit 1, naming the object.
    assert_eq!(
        polyaxon.exits.last().map(|(_, code)| *code),
        Some(0),
        "{}",
        polyaxon.logs
    );
    assert_eq!(
        ours.exits.last().map(|(_, code)| *code),
        Some(1),
        "{}",
        ours.logs
    );
    assert!(
        ours.logs.contains("s3://datasets/v1/nope.csv"),
        "{}",
        ours.logs
    );
    assert!(!ours.tree.contains_key("data/labels.csv"), "{}", ours.logs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_entry_scratch_image_runs_the_generated_script() -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    let (containers, volumes) = deployment.generate(
        "s3",
        plugins(false),
        json!({"init": [{"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "data",
                         "container": {"name": "pull", "image": SCRATCH}}]}),
    );
    let entry = containers
        .iter()
        .find(|c| c["image"] == json!(SCRATCH))
        .expect("the per-entry image is used as written, with no tag appended");
    assert!(
        entry["args"]
            .to_string()
            .contains("polyaxon initializer path"),
        "{entry}"
    );
    let ours = deployment.run(&containers, &volumes, Images::Generated)?;
    let polyaxon = deployment.run(&containers, &volumes, Images::Polyaxon)?;
    same(&ours, &polyaxon);
    assert!(
        ours.plx_state
            .iter()
            .any(|path| path.starts_with(".plx-transfer/data/")),
        "{}",
        ours.logs
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_entry_with_plx_manifest_keeps_its_manifest_with_the_runs_outputs()
-> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    // As a user writes it; Polyaxon's compiler fills in the run's outputs path, which the
    // sidecar uploads to the artifacts store with the run's other outputs.
    let (containers, volumes) = deployment.generate(
        "s3",
        plugins(false),
        json!({"init": [{"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "data",
                         "container": {"name": "pull", "env": [
                             {"name": "PLX_MANIFEST", "value": "{{ globals.run_outputs_path }}/plx-manifest.json"}]}}]}),
    );
    let ours = deployment.run(&containers, &volumes, Images::Generated)?;
    assert!(
        ours.exits.iter().all(|(_, code)| *code == 0),
        "{}",
        ours.logs
    );
    let written = ours
        .tree
        .get(&format!("{UUID}/outputs/plx-manifest.json"))
        .unwrap_or_else(|| panic!("no manifest with the run's outputs: {:?}", ours.tree.keys()));
    let manifest: Value = serde_json::from_slice(written)?;
    let pulls = manifest["pulls"].as_array().cloned().unwrap_or_default();
    assert_eq!(pulls.len(), 1, "{manifest}");
    assert_eq!(pulls[0]["connection"], "data");
    assert_eq!(pulls[0]["destination"], "/plx-context/artifacts/data");
    let paths: Vec<&str> = pulls[0]["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|object| object["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        ["labels.csv", "train/a.csv", "train/x/b.csv"],
        "{manifest}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweeps_pods_share_the_node_cache_through_the_runs_volumes() -> anyhow::Result<()> {
    let deployment = Deployment::start().await?;
    // As README's "Sweeps" section writes it: the run's hostPath volume, and the entry's init
    // container with PLX_CACHE_DIR and the mount.
    let (containers, volumes) = deployment.generate(
        "s3",
        plugins(false),
        json!({"volumes": [{"name": "plx-cache", "hostPath": {"path": "/var/cache/plx", "type": "DirectoryOrCreate"}}],
               "init": [{"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "data",
                         "container": {"name": "pull",
                                       "env": [{"name": "PLX_CACHE_DIR", "value": "/plx-cache"}],
                                       "volumeMounts": [{"name": "plx-cache", "mountPath": "/plx-cache"}]}}]}),
    );
    // Two runs of a sweep on one node, one after the other.
    let first = deployment.run(&containers, &volumes, Images::Generated)?;
    let second = deployment.run(&containers, &volumes, Images::Generated)?;
    for pod in [&first, &second] {
        assert!(pod.exits.iter().all(|(_, code)| *code == 0), "{}", pod.logs);
    }
    assert_eq!(first.tree, second.tree);
    assert!(
        first.tree.contains_key("data/train/x/b.csv"),
        "{:?}",
        first.tree.keys()
    );
    assert!(
        !first.logs.contains("from the node cache"),
        "{}",
        first.logs
    );
    // labels.csv is one line of the generated script, train (two objects) another.
    for said in [
        "data: 1 objects from the node cache",
        "data: 2 objects from the node cache",
    ] {
        assert!(second.logs.contains(said), "{}", second.logs);
    }
    Ok(())
}
