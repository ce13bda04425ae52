//! `plx-init` killed with SIGKILL in the middle of a pull, then run again: every file visible
//! at the kill is complete and right, the rerun completes, and what the killed run had landed
//! and verified is not fetched again.

use std::{collections::BTreeMap, path::Path, time::Duration};

use plx_testkit::{S3Server, visible_files as visible};

use crate::pod::{Store, command};

const OBJECTS: usize = 1500;

fn hidden(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else if name.starts_with('.') {
                names.push(name);
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_half_way_resumes_without_fetching_what_landed() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket("datasets").await?;
    let mut objects = BTreeMap::new();
    for index in 0..OBJECTS {
        let body: Vec<u8> = (0..4096u32)
            .map(|at| (at as usize * 31 + index) as u8)
            .collect();
        objects.insert(format!("d/{:02}/{index:04}.bin", index % 7), body);
    }
    for (key, body) in &objects {
        server
            .put("datasets", &format!("v1/{key}"), body.clone())
            .await?;
    }
    let context = tempfile::tempdir()?;
    let destination = context.path().join("artifacts/data");
    // One worker, so the pull lasts long enough to be killed half-way.
    let store = Store::of(&server);
    let mut child = command(
        &store,
        context.path(),
        &[
            "artifacts",
            "--connection",
            "data",
            "--dirs",
            "d",
            "--workers",
            "1",
        ],
    )
    .spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while visible(&destination).len() < 100 {
        assert!(tokio::time::Instant::now() < deadline, "nothing landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill()?; // SIGKILL: no handler runs, nothing is flushed or cleaned up
    child.wait()?;
    let at_kill = visible(&destination);
    assert!(
        at_kill.len() < OBJECTS,
        "the pull finished before the kill; the test needs a slower pull"
    );
    // Nothing half-written under a final name.
    for (path, bytes) in &at_kill {
        assert!(
            &objects[path] == bytes,
            "{path} is visible but not complete"
        );
    }

    let summary = context.path().join("summary.json");
    let output = command(
        &store,
        context.path(),
        &["artifacts", "--connection", "data", "--dirs", "d"],
    )
    .arg("--summary")
    .arg(&summary)
    .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        visible(&destination) == objects,
        "the tree differs after the rerun"
    );
    let records: Vec<plx_transfer::Record> = serde_json::from_slice(&std::fs::read(&summary)?)?;
    let run = &records[0].summary;
    let (fetched, skipped) = (run.objects as usize, run.skipped as usize);
    assert_eq!(fetched + skipped, OBJECTS, "{records:?}");
    // A file renamed into place an instant before the kill may not be recorded yet: at most
    // the one in flight (one worker) is fetched again.
    assert!(
        skipped + 1 >= at_kill.len(),
        "{skipped} skipped, but {} had landed before the kill: {records:?}",
        at_kill.len()
    );
    // The data tree holds only the data: no temporaries, and the engine's state (folded, no
    // journal left) is beside it.
    assert_eq!(hidden(&destination), Vec::<String>::new());
    let state = context.path().join("artifacts/.plx-transfer/data");
    let kept: Vec<String> = std::fs::read_dir(&state)?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["state.json"]);
    Ok(())
}
