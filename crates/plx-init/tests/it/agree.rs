//! plx-init and the webhook agree on which of Polyaxon's commands plx-init runs: every command
//! Polyaxon 2.18's own converter writes into a run's init containers
//! (`conformance/polyaxon_converter.py`) is run by the real binary as `polyaxon`, in the scratch
//! image's way (no Polyaxon CLI to hand over to), and judged by the webhook's check of the
//! scratch image; the two must say the same of each.

use std::{collections::BTreeSet, os::unix::process::CommandExt, process::Command};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// A run with an entry of every kind the converter writes a command for, and every plugin.
fn generated() -> Vec<Value> {
    let s3 = |name: &str, bucket: &str| json!({"name": name, "kind": "s3", "schema": {"bucket": bucket}, "secret": {"name": "s3-secret"}});
    let case = json!({
        "uuid": "8aac02e8bf3545e5a2a8d6b0f7a1f3a1",
        "agent": {
            "namespace": "polyaxon",
            "init": {"image": "plx-init"},
            "artifactsStore": s3("store", "s3://runs"),
            "connections": [
                s3("data", "s3://datasets/v1"),
                {"name": "mount", "kind": "host_path", "schema": {"hostPath": "/srv/data", "mountPath": "/data"}},
                {"name": "claim", "kind": "volume_claim", "schema": {"volumeClaim": "data-claim", "mountPath": "/claim"}},
                {"name": "gdata", "kind": "gcs", "schema": {"bucket": "gs://datasets/v1"}, "secret": {"name": "gcs-secret"}},
                {"name": "wdata", "kind": "wasb", "schema": {"bucket": "wasbs://datasets@account.blob.core.windows.net/v1"}, "secret": {"name": "azure-secret"}},
                {"name": "repo", "kind": "git", "schema": {"url": "https://github.com/polyaxon/polyaxon", "revision": "main"}},
            ],
        },
        "operation": {"version": 1.1, "kind": "compiled_operation",
            "plugins": {"auth": true, "tmux": true, "collectArtifacts": true, "autoResume": true, "collectLogs": false},
            "run": {"kind": "job", "connections": ["data"],
                "init": [
                    {"artifacts": {"files": ["labels.csv"], "dirs": ["train"]}, "connection": "data"},
                    {"paths": ["meta/m.json", "train/x"], "connection": "data", "path": "/plx-context/artifacts/picked"},
                    {"artifacts": {"dirs": ["train"]}, "connection": "mount"},
                    {"artifacts": {"dirs": ["train/x"]}, "connection": "claim"},
                    {"artifacts": {"files": ["a.csv"]}, "connection": "gdata"},
                    {"artifacts": {"dirs": ["train"]}, "connection": "wdata"},
                    {"connection": "repo"},
                    {"file": {"filename": "hello.txt", "content": "hi"}},
                    {"dockerfile": {"image": "busybox", "run": ["echo hi"]}},
                    {"tensorboard": {"uuids": ["0aac02e8bf3545e5a2a8d6b0f7a1f3a1"]}},
                ],
                "container": {"image": "busybox", "command": ["true"]}}},
    });
    let generated = plx_testkit::polyaxon_converter(&case).expect("Polyaxon's converter runs");
    generated["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether plx-init, run as `polyaxon` with `args` where no Polyaxon CLI is there to take a
/// command, hands it over (exit 2, naming it as Polyaxon's own) rather than running it.
fn hands_over(args: &[String], context: &std::path::Path) -> bool {
    let output = Command::new(env!("CARGO_BIN_EXE_plx-init"))
        .arg0("polyaxon")
        .args(args)
        .env_clear()
        // What plx-init runs itself writes here (`initializer fswatch`), and pulls from no
        // catalog (`initializer path` stops at once: exit 2, no catalog).
        .env("POLYAXON_CONTEXT_ROOT", context)
        .output()
        .expect("plx-init runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let handed =
        stderr.contains("is Polyaxon's own command, which the plx-init image does not run");
    assert!(
        !handed || output.status.code() == Some(2),
        "{args:?}: {output:?}"
    );
    handed
}

#[test]
fn plx_init_runs_exactly_the_commands_the_webhook_says_the_scratch_image_runs() {
    let containers = generated();
    // Every container in the scratch image, as a deployment whose `init.image` is plx-init.
    let pod = json!({"spec": {"containers": [], "initContainers": containers.iter().map(|container| {
        let mut container = container.clone();
        container["image"] = json!("registry.example.com/plx-init:0.1.0");
        container
    }).collect::<Vec<_>>()}});
    let pod: Pod = serde_json::from_value(pod).expect("the converter's containers make a Pod");
    let refused: BTreeSet<String> = plx_webhook::check::scratch_image_commands(&pod, false)
        .iter()
        .filter_map(|problem| {
            let (_, rest) = problem.message.split_once("runs `")?;
            Some(rest.split_once("` in the plx-init image")?.0.to_owned())
        })
        .collect();
    let context = tempfile::tempdir().expect("a directory");
    let (mut ours, mut theirs) = (0, 0);
    for container in pod
        .spec
        .iter()
        .flat_map(|spec| spec.init_containers.iter().flatten())
    {
        for command in plx_webhook::check::commands(container) {
            if command.first().map(|program| program.rsplit('/').next()) != Some(Some("polyaxon")) {
                continue;
            }
            let line = command.join(" ");
            let handed = hands_over(&command[1..], context.path());
            assert_eq!(
                handed,
                refused.contains(&line),
                "`{line}`: plx-init {} it, the webhook says the scratch image {} it",
                if handed { "hands over" } else { "runs" },
                if refused.contains(&line) {
                    "cannot run"
                } else {
                    "runs"
                },
            );
            assert_eq!(
                handed,
                !plx_connections::runs_itself(&command[1..]),
                "{line}"
            );
            if handed {
                theirs += 1;
            } else {
                ours += 1;
            }
        }
    }
    // Both kinds are there: s3, mount and restore pulls and fswatch; auth, git, file, gcs, wasb.
    assert!(ours >= 4 && theirs >= 5, "ran {ours}, handed over {theirs}");
}
