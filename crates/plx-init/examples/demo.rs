//! `cargo xtask demo`: the main job end to end on nothing but this checkout. An S3 server runs
//! inside this process (the s3s-fs library), a sample dataset is seeded, the seed page's catalog
//! is validated (and refused), the fixed catalog and a job are validated, and `plx-init
//! artifacts` pulls the job's `init:` section into a context directory, twice (the second run
//! skips what is there). Usage: `demo PATH-TO-PLX-INIT WORK-DIR`.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};
use plx_testkit::Embedded;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("demo: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(plx_init), Some(work)) = (args.next(), args.next()) else {
        bail!("usage: demo PATH-TO-PLX-INIT WORK-DIR");
    };
    let (plx_init, work) = (PathBuf::from(plx_init), PathBuf::from(work));
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot clear {}", work.display()))?;
    }
    let store = work.join("s3");
    std::fs::create_dir_all(&store)?;
    let demo = Demo {
        plx_init,
        work: work.clone(),
    };

    step("An S3 server in this process (s3s-fs), with a sample dataset");
    let server = Embedded::start(&store).await?;
    println!("serving {} from {}", server.endpoint, store.display());
    let objects = seed(&server).await?;
    println!(
        "seeded s3://bucket: {} objects, {:.1} MB",
        objects.len(),
        objects.iter().map(|(_, size)| *size as f64).sum::<f64>() / 1e6
    );

    step("The seed page's second example: two connections, one name");
    let seed_catalog = demo.write("connections-seed.yaml", SEED_CATALOG)?;
    demo.expect(1, &["validate".as_ref(), seed_catalog.as_os_str()], &[])?;

    step("Fixed: unique names; the second reads its keys from a mounted secret");
    let secrets = work.join("secrets/minio");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("AWS_ACCESS_KEY_ID"), &server.access_key)?;
    std::fs::write(secrets.join("AWS_SECRET_ACCESS_KEY"), &server.secret_key)?;
    let fixed = FIXED_CATALOG
        .replace("$ENDPOINT", &server.endpoint)
        .replace("$SECRETS", &secrets.display().to_string());
    let catalog = demo.write("connections.yaml", &fixed)?;
    demo.expect(0, &["validate".as_ref(), catalog.as_os_str()], &[])?;

    step("A job that names the connections, checked against the catalog");
    let job = demo.write("job.yaml", JOB)?;
    demo.expect(
        0,
        &[
            "validate".as_ref(),
            "--catalog".as_ref(),
            catalog.as_os_str(),
            job.as_os_str(),
        ],
        &[],
    )?;

    step("The init container's job: pull the job's init section into the context");
    let context = work.join("plx-context");
    let summary = work.join("summary.json");
    // As in a pod: the first connection's secret arrives as environment variables.
    let env = [
        ("POLYAXON_CONTEXT_ROOT", context.display().to_string()),
        ("AWS_ACCESS_KEY_ID", server.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.clone()),
        ("AWS_ENDPOINT_URL", server.endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let pull = [
        "artifacts".as_ref(),
        "--catalog".as_ref(),
        catalog.as_os_str(),
        "--init".as_ref(),
        job.as_os_str(),
        "--summary".as_ref(),
        summary.as_os_str(),
    ];
    demo.expect(0, &pull, &env)?;
    step("What landed");
    tree(&context)?;
    println!("--- summary.json\n{}", std::fs::read_to_string(&summary)?);

    step("Run again: everything is there and verified, nothing is fetched");
    demo.expect(0, &pull, &env)?;

    step("A file that is not in the bucket: exit 1, named (Polyaxon would log it and exit 0)");
    let missing = demo.write("job-missing.yaml", JOB_MISSING)?;
    demo.expect(
        1,
        &[
            "artifacts".as_ref(),
            "--catalog".as_ref(),
            catalog.as_os_str(),
            "--init".as_ref(),
            missing.as_os_str(),
        ],
        &env,
    )?;
    step("Done");
    Ok(())
}

struct Demo {
    plx_init: PathBuf,
    work: PathBuf,
}

impl Demo {
    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.work.join(name);
        std::fs::write(&path, text)?;
        println!("--- {name}\n{text}");
        Ok(path)
    }

    /// Runs plx-init as shown and fails the demo unless it exits with `code`.
    fn expect(
        &self,
        code: i32,
        args: &[&std::ffi::OsStr],
        env: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let shown: Vec<String> = args
            .iter()
            .map(|arg| {
                arg.to_string_lossy()
                    .replace(&*self.work.to_string_lossy(), "$DEMO")
            })
            .collect();
        println!("$ plx-init {}", shown.join(" "));
        let status = Command::new(&self.plx_init)
            .args(args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .status()
            .with_context(|| format!("cannot run {}", self.plx_init.display()))?;
        let got = status.code().unwrap_or(-1);
        println!("(exit {got})");
        if got != code {
            bail!("expected exit {code}, got {got}");
        }
        Ok(())
    }
}

/// A small dataset: 200 training shards, labels, and one large file fetched in parts.
async fn seed(server: &Embedded) -> anyhow::Result<Vec<(String, usize)>> {
    plx_testkit::s3::create_bucket(&server.client, "bucket").await?;
    let mut objects = Vec::new();
    for index in 0..200 {
        objects.push((format!("path1/train/shard-{index:04}.csv"), 16 * 1024));
    }
    objects.push(("path1/labels.csv".to_owned(), 4096));
    objects.push(("path2/images/archive.tar".to_owned(), 40 * 1024 * 1024));
    objects.push(("path2/v2/meta.json".to_owned(), 512));
    objects.push(("path2/labels.csv".to_owned(), 2048));
    for (key, size) in &objects {
        let body: Vec<u8> = (0..*size)
            .map(|at| (at as u64 * 31 + key.len() as u64) as u8)
            .collect();
        plx_testkit::s3::put(&server.client, "bucket", key, body).await?;
    }
    Ok(objects)
}

fn tree(root: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.push((entry.path(), entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    let shown = files.len();
    for (index, (path, size)) in files.iter().enumerate() {
        // Long listings are cut in the middle.
        if shown > 12 && (5..shown - 5).contains(&index) {
            if index == 5 {
                println!("  ... {} more", shown - 10);
            }
            continue;
        }
        println!(
            "  {:>10}  {}",
            size,
            path.strip_prefix(root).unwrap_or(path).display()
        );
    }
    println!("  {shown} files");
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

const SEED_CATALOG: &str = "\
connections:
- name: s3-dataset1
  kind: s3
  schema:
    bucket: \"s3://bucket/path1\"
  secret:
    name: \"s3-secret\"
- name: s3-dataset1
  kind: s3
  schema:
    bucket: \"s3://bucket/path2\"
  secret:
    name: \"s3-secret\"
";

const FIXED_CATALOG: &str = "\
connections:
- name: s3-dataset1
  kind: s3
  schema:
    bucket: \"s3://bucket/path1\"
  secret:
    name: \"s3-secret\"
- name: s3-dataset2
  kind: s3
  schema:
    bucket: \"s3://bucket/path2\"
  secret: {name: minio-secret, mountPath: $SECRETS}
  env: {AWS_ENDPOINT_URL: \"$ENDPOINT\", AWS_REGION: us-east-1}
";

const JOB: &str = "\
version: 1.1
kind: component
run:
  kind: job
  connections: [s3-dataset1, s3-dataset2]
  init:
  - artifacts: {dirs: [train], files: [labels.csv]}
    connection: s3-dataset1
  - artifacts: {dirs: [images], files: [[\"v2/meta.json\", meta.json]]}
    connection: s3-dataset2
  container: {image: python:3.11, command: [python, train.py]}
";

const JOB_MISSING: &str = "\
- artifacts: {files: [labels-v3.csv]}
  connection: s3-dataset1
";
