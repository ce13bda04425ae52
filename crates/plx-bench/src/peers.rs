//! The tools side by side, and the command each runs for a workload: with its own defaults, and
//! tuned to plx-init's (up to 256 requests in flight, 8 parts of 8 MiB per object, parts from
//! 16 MiB).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use crate::workload::{Entry, Workload};

/// plx-init's defaults, which the tuned rows copy: its cap on requests in flight (it finds how
/// many it needs below it; the peers have no such controller, so they get the cap).
pub const CONCURRENCY: usize = 256;
pub const PART_CONCURRENCY: usize = 8;
pub const PART_MIB: u64 = 8;
pub const THRESHOLD_MIB: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    PlxInit,
    /// plx-init with `--no-verify`: the engine without the MD5 of every byte.
    PlxInitSizes,
    S5cmd,
    Rclone,
    AwsCli,
    Boto3,
    Polyaxon,
    TransferManager,
    Curl,
}

impl Tool {
    pub const ALL: [Tool; 9] = [
        Tool::PlxInit,
        Tool::PlxInitSizes,
        Tool::S5cmd,
        Tool::Rclone,
        Tool::AwsCli,
        Tool::Boto3,
        Tool::Polyaxon,
        Tool::TransferManager,
        Tool::Curl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::PlxInit => "plx-init",
            Tool::PlxInitSizes => "plx-init --no-verify",
            Tool::S5cmd => "s5cmd",
            Tool::Rclone => "rclone",
            Tool::AwsCli => "aws cli",
            Tool::Boto3 => "boto3 TransferManager",
            Tool::Polyaxon => "polyaxon 2.18 (s3fs)",
            Tool::TransferManager => "aws-s3-transfer-manager",
            Tool::Curl => "curl floor",
        }
    }

    /// Whether a tuned row exists: plx-init is the reference, Polyaxon's path has no knobs its
    /// init container sets, and the floor runs at plx-init's concurrency only.
    pub fn tunable(self) -> bool {
        !matches!(
            self,
            Tool::PlxInit | Tool::PlxInitSizes | Tool::Polyaxon | Tool::Curl
        )
    }
}

/// A row of the table: a tool with its defaults or tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub tool: Tool,
    pub tuned: bool,
}

impl Peer {
    pub fn label(self) -> String {
        match (self.tool.tunable(), self.tuned) {
            (false, _) => self.tool.name().to_owned(),
            (true, false) => format!("{} (defaults)", self.tool.name()),
            (true, true) => format!("{} (tuned)", self.tool.name()),
        }
    }

    /// A short name for files.
    pub fn slug(self) -> String {
        let name: String = self
            .tool
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("{name}{}", if self.tuned { "-tuned" } else { "" })
    }

    /// Every row, tuned beside defaults.
    pub fn all() -> Vec<Peer> {
        Tool::ALL
            .into_iter()
            .flat_map(|tool| {
                let mut rows = vec![Peer { tool, tuned: false }];
                if tool.tunable() {
                    rows.push(Peer { tool, tuned: true });
                }
                rows
            })
            .collect()
    }
}

/// Where the tools are and what the server is.
#[derive(Clone)]
pub struct Context {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// plx-init's binary.
    pub plx_init: PathBuf,
    /// The venv with s5cmd, rclone, the AWS CLI and boto3.
    pub venv: PathBuf,
    /// The venv with polyaxon[fs] 2.18.
    pub polyaxon: PathBuf,
    /// This program (the transfer-manager peer runs through it).
    pub bench: PathBuf,
    /// The Python scripts beside this crate.
    pub scripts: PathBuf,
    /// Whether this bench was built with the transfer-manager peer.
    pub tm: bool,
    /// The server is s3s-fs: Polyaxon's `initializer path` says it initialized a prefix there
    /// and fetches nothing (s3s-fs answers 500 to a HEAD of a prefix; on Garage it works), so
    /// Polyaxon's downloads are not run on it.
    pub s3s: bool,
}

/// A download run brings `workload`'s wanted keys to `destination/<key>`; an upload run sends
/// `source/<workload prefix>` to `upload_prefix`. None where the tool has no way to run it.
pub struct Run<'a> {
    pub workload: &'a Workload,
    pub destination: &'a Path,
    pub source: &'a Path,
    pub upload_prefix: &'a str,
    /// For scripts and lists the command reads.
    pub scratch: &'a Path,
    /// Presigned URLs, per key, for the curl floor (GET for downloads, PUT for uploads).
    pub presigned: &'a [(String, String)],
}

pub fn command(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let command = match peer.tool {
        Tool::PlxInit | Tool::PlxInitSizes => plx_init(ctx, peer, run)?,
        Tool::S5cmd => s5cmd(ctx, peer, run)?,
        Tool::Rclone => rclone(ctx, peer, run)?,
        Tool::AwsCli => aws_cli(ctx, peer, run)?,
        Tool::Boto3 | Tool::TransferManager => python_peer(ctx, peer, run)?,
        Tool::Polyaxon => polyaxon(ctx, peer, run)?,
        Tool::Curl => curl(run)?,
    };
    let Some(mut command) = command else {
        return Ok(None);
    };
    // Keys from the environment, as in a pod where a Secret's keys land in env.
    command.envs(keys(ctx));
    Ok(Some(command))
}

/// plx-init with its defaults pulling `workload` into `destination` (the sweep's runs, and the
/// Python readers' yardstick).
pub fn plx_init_pull(
    ctx: &Context,
    workload: &Workload,
    destination: &Path,
    source: &Path,
    scratch: &Path,
) -> anyhow::Result<Command> {
    let run = Run {
        workload,
        destination,
        source,
        upload_prefix: "",
        scratch,
        presigned: &[],
    };
    let peer = Peer {
        tool: Tool::PlxInit,
        tuned: false,
    };
    command(ctx, peer, &run)?
        .ok_or_else(|| anyhow::anyhow!("plx-init has no run for {}", workload.name))
}

/// plx-init's `artifacts` or `upload`, with a catalog naming the bench bucket.
fn plx_init(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    if peer.tool == Tool::PlxInitSizes && workload.upload {
        return Ok(None);
    }
    let catalog = run.scratch.join("catalog.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"connections": [{
            "name": "bench", "kind": "s3",
            "schema": {"bucket": format!("s3://{}", ctx.bucket)},
            "env": {"AWS_ENDPOINT_URL": ctx.endpoint, "AWS_REGION": ctx.region},
        }]})
        .to_string(),
    )?;
    let command = if workload.upload {
        let mut command = Command::new(&ctx.plx_init);
        command
            .args(["upload", "--connection", "bench", "--catalog"])
            .arg(&catalog)
            .arg("--summary")
            .arg(run.scratch.join("summary.json"))
            .arg(&local_source)
            .arg(run.upload_prefix);
        command
    } else {
        let mut command = Command::new(&ctx.plx_init);
        command
            .args(["artifacts", "--connection", "bench", "--catalog"])
            .arg(&catalog)
            .arg("--path")
            .arg(dst)
            .arg("--summary")
            .arg(run.scratch.join("summary.json"));
        if peer.tool == Tool::PlxInitSizes {
            command.arg("--no-verify");
        }
        for entry in &workload.entries {
            match entry {
                Entry::Prefix(prefix) => {
                    let prefix = prefix.trim_end_matches('/');
                    command.arg(format!("--dirs={prefix}:{prefix}"))
                }
                Entry::Key(key) => command.arg(format!("--files={key}:{key}")),
            };
        }
        command
    };
    Ok(Some(command))
}

/// s5cmd, at its defaults or tuned.
fn s5cmd(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    let bin = ctx.venv.join("bin");
    let mut lines = String::new();
    let flags = if peer.tuned {
        format!("-c {PART_CONCURRENCY} -p {PART_MIB} ")
    } else {
        String::new()
    };
    if workload.upload {
        writeln!(
            lines,
            "cp {flags}'{}/*' 's3://{}/{}'",
            local_source.display(),
            ctx.bucket,
            run.upload_prefix
        )?;
    } else {
        for entry in &workload.entries {
            match entry {
                Entry::Prefix(prefix) => writeln!(
                    lines,
                    "cp {flags}'s3://{}/{prefix}*' '{}/{prefix}'",
                    ctx.bucket,
                    dst.display()
                )?,
                Entry::Key(key) => writeln!(
                    lines,
                    "cp {flags}'s3://{}/{key}' '{}/{key}'",
                    ctx.bucket,
                    dst.display()
                )?,
            }
        }
    }
    let list = run.scratch.join("s5cmd.txt");
    std::fs::write(&list, lines)?;
    let mut command = Command::new(bin.join("s5cmd"));
    command
        .envs(keys(ctx))
        .arg("--endpoint-url")
        .arg(&ctx.endpoint);
    if peer.tuned {
        command.args(["--numworkers", &CONCURRENCY.to_string()]);
    }
    command.arg("run").arg(list);
    Ok(Some(command))
}

/// rclone, at its defaults or tuned.
fn rclone(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    let bin = ctx.venv.join("bin");
    let mut command = Command::new(bin.join("rclone"));
    command
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", &ctx.endpoint)
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", &ctx.access_key)
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", &ctx.secret_key)
        .env("RCLONE_CONFIG_BENCH_REGION", &ctx.region)
        .env("RCLONE_CONFIG", "/dev/null")
        .args(["copy", "-v", "--stats", "0"]);
    if workload.upload {
        command
            .arg(&local_source)
            .arg(format!("bench:{}/{}", ctx.bucket, run.upload_prefix))
            .arg("--s3-no-check-bucket");
    } else {
        // From the bucket root with filters: rclone HEADs a prefix given as the source.
        let mut filters = String::new();
        for entry in &workload.entries {
            match entry {
                Entry::Prefix(prefix) => writeln!(filters, "+ /{prefix}**")?,
                Entry::Key(key) => writeln!(filters, "+ /{key}")?,
            }
        }
        filters.push_str("- **\n");
        let list = run.scratch.join("rclone-filter.txt");
        std::fs::write(&list, filters)?;
        command
            .arg(format!("bench:{}", ctx.bucket))
            .arg(dst)
            .arg("--filter-from")
            .arg(list);
    }
    if peer.tuned {
        command.args([
            "--transfers",
            &CONCURRENCY.to_string(),
            "--checkers",
            &CONCURRENCY.to_string(),
            "--multi-thread-streams",
            &PART_CONCURRENCY.to_string(),
            "--multi-thread-cutoff",
            &format!("{THRESHOLD_MIB}Mi"),
            "--multi-thread-chunk-size",
            &format!("{PART_MIB}Mi"),
            "--s3-upload-cutoff",
            &format!("{THRESHOLD_MIB}Mi"),
            "--s3-chunk-size",
            &format!("{PART_MIB}Mi"),
            "--s3-upload-concurrency",
            &PART_CONCURRENCY.to_string(),
        ]);
    }
    Ok(Some(command))
}

/// The AWS CLI's `s3 cp` / `s3 sync`.
fn aws_cli(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    let bin = ctx.venv.join("bin");
    let config = run.scratch.join("aws-config");
    let mut text = "[default]\n".to_owned();
    if peer.tuned {
        write!(
            text,
            "s3 =\n  max_concurrent_requests = {CONCURRENCY}\n  multipart_threshold = {THRESHOLD_MIB}MB\n  multipart_chunksize = {PART_MIB}MB\n"
        )?;
    }
    std::fs::write(&config, text)?;
    let mut command = Command::new(bin.join("aws"));
    command
        .envs(keys(ctx))
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .arg("--endpoint-url")
        .arg(&ctx.endpoint)
        .args(["s3", "cp", "--recursive", "--only-show-errors"]);
    if workload.upload {
        command
            .arg(&local_source)
            .arg(format!("s3://{}/{}", ctx.bucket, run.upload_prefix));
    } else {
        // One listing of the workload's prefix, filtered to what is asked: the CLI
        // takes no list of keys.
        let prefix = workload.prefix();
        command
            .arg(format!("s3://{}/{prefix}", ctx.bucket))
            .arg(dst.join(&prefix));
        if workload
            .entries
            .iter()
            .any(|entry| !matches!(entry, Entry::Prefix(p) if *p == prefix))
        {
            command.args(["--exclude", "*"]);
            for entry in &workload.entries {
                let (Entry::Prefix(path) | Entry::Key(path)) = entry;
                let relative = &path[prefix.len()..];
                let pattern = match entry {
                    Entry::Prefix(_) => format!("{relative}*"),
                    Entry::Key(_) => relative.to_owned(),
                };
                command.args(["--include", &pattern]);
            }
        }
    }
    Ok(Some(command))
}

/// boto3's TransferManager or aws-s3-transfer-manager, reading a spec file.
fn python_peer(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let bin = ctx.venv.join("bin");
    if peer.tool == Tool::TransferManager && !ctx.tm {
        return Ok(None);
    }
    let spec = spec(ctx, peer, run)?;
    let mut command = if peer.tool == Tool::Boto3 {
        let mut command = Command::new(bin.join("python"));
        command.arg(ctx.scripts.join("boto3_tm.py"));
        command
    } else {
        let mut command = Command::new(&ctx.bench);
        command.arg("tm");
        command
    };
    command.envs(keys(ctx)).arg(spec);
    Ok(Some(command))
}

/// Polyaxon 2.18's own `initializer path` (s3fs), one call per entry, as its init container runs them.
fn polyaxon(ctx: &Context, _: Peer, run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    let catalog = serde_json::json!({"connections": [{
        "name": "bench", "kind": "s3",
        "schema": {"bucket": format!("s3://{}", ctx.bucket)},
        "env": {"AWS_ENDPOINT_URL": ctx.endpoint, "AWS_REGION": ctx.region,
                "AWS_USE_SSL": "false"},
    }]})
    .to_string();
    let pbin = ctx.polyaxon.join("bin");
    let mut command = if workload.upload {
        let mut command = Command::new(pbin.join("python"));
        command
            .arg(ctx.scripts.join("polyaxon_put.py"))
            .arg(&local_source)
            .arg(format!("{}/{}", ctx.bucket, run.upload_prefix));
        command
    } else {
        // As the init container's generated script: one `polyaxon initializer path`
        // per entry, under `sh -e` (which plx-init's image adds; Polyaxon's does not).
        if workload.entries.len() > 8 || ctx.s3s {
            return Ok(None);
        }
        let mut script = String::new();
        for entry in &workload.entries {
            let (Entry::Prefix(path) | Entry::Key(path)) = entry;
            let path = path.trim_end_matches('/');
            writeln!(
                script,
                "{} initializer path --connection-name=bench --connection-kind=s3 --path-from=s3://{}/{path} --path-to={}/{path} --raise-errors{};",
                pbin.join("polyaxon").display(),
                ctx.bucket,
                dst.display(),
                if matches!(entry, Entry::Key(_)) {
                    " --is-file"
                } else {
                    ""
                },
            )?;
        }
        let mut command = Command::new("sh");
        command.arg("-ec").arg(script);
        command
    };
    command
        .envs(keys(ctx))
        .env("POLYAXON_SERVICE", "init")
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog)
        .env("POLYAXON_NO_OP", "false")
        .env("POLYAXON_HOME", run.scratch.join("polyaxon-home"));
    Ok(Some(command))
}

/// The curl floor: presigned GETs or PUTs in parallel.
fn curl(run: &Run<'_>) -> anyhow::Result<Option<Command>> {
    let workload = run.workload;
    let dst = run.destination;
    let local_source = run.source.join(workload.prefix());
    let mut config = String::new();
    let wanted = workload.wanted();
    // Only large objects (W3): each in ranged parts, as plx-init fetches it, into part files
    // beside the destination (the floor moves bytes; it does not assemble them), with as many
    // connections as plx-init keeps on them.
    let ranged = !workload.upload && wanted.values().all(|size| *size >= THRESHOLD_MIB << 20);
    let parallel = if ranged {
        wanted.len() * PART_CONCURRENCY
    } else {
        CONCURRENCY
    };
    for (key, url) in run.presigned {
        if ranged {
            let size = wanted.get(key.as_str()).copied().unwrap_or(0);
            let part = PART_MIB << 20;
            for (index, start) in (0..size).step_by(part as usize).enumerate() {
                let end = (start + part).min(size) - 1;
                // `range` is per transfer only within a `next` group (else the last one given
                // applies to every URL); so are `create-dirs` and `fail`. `next` goes between
                // groups: a trailing one is an empty transfer, which curl refuses.
                if !config.is_empty() {
                    config.push_str("next\n");
                }
                writeln!(
                    config,
                    "url = \"{url}\"\nrange = \"{start}-{end}\"\noutput = \"{}\"\ncreate-dirs\nfail",
                    curl_parts(run.destination)
                        .join(format!("{key}.{index}"))
                        .display()
                )?;
            }
        } else if workload.upload {
            let relative = &key[run.upload_prefix.len()..];
            writeln!(
                config,
                "url = \"{url}\"\nupload-file = \"{}\"\noutput = \"/dev/null\"",
                local_source.join(relative).display()
            )?;
        } else {
            writeln!(
                config,
                "url = \"{url}\"\noutput = \"{}\"",
                dst.join(key).display()
            )?;
        }
    }
    let list = run.scratch.join("curl.cfg");
    std::fs::write(&list, config)?;
    let mut command = Command::new("curl");
    command
        .args(["--parallel", "--parallel-max", &parallel.to_string()])
        .args(["--create-dirs", "--fail", "--no-progress-meter", "-K"])
        .arg(list);
    Ok(Some(command))
}

/// Where the curl floor's ranged parts land: beside the destination, on the same file system.
pub fn curl_parts(destination: &Path) -> PathBuf {
    destination.with_file_name("curl-parts")
}

/// The server's keys and region, as a pod's env holds a Secret's keys.
pub fn keys(ctx: &Context) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ctx.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", ctx.secret_key.clone()),
        ("AWS_REGION", ctx.region.clone()),
        ("AWS_DEFAULT_REGION", ctx.region.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// The JSON the boto3 script and the transfer-manager peer read.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub upload: bool,
    pub tuned: bool,
    pub prefixes: Vec<String>,
    pub keys: Vec<String>,
    /// Downloads: the directory keys land under. Uploads: the directory sent.
    pub local: PathBuf,
    /// Uploads: the key prefix.
    pub upload_prefix: String,
    pub concurrency: usize,
    pub part_concurrency: usize,
    pub part_size: u64,
    pub threshold: u64,
}

fn spec(ctx: &Context, peer: Peer, run: &Run<'_>) -> anyhow::Result<PathBuf> {
    let (mut prefixes, mut keys) = (Vec::new(), Vec::new());
    for entry in &run.workload.entries {
        match entry {
            Entry::Prefix(prefix) => prefixes.push(prefix.clone()),
            Entry::Key(key) => keys.push(key.clone()),
        }
    }
    let spec = Spec {
        endpoint: ctx.endpoint.clone(),
        bucket: ctx.bucket.clone(),
        region: ctx.region.clone(),
        upload: run.workload.upload,
        tuned: peer.tuned,
        prefixes,
        keys,
        local: if run.workload.upload {
            run.source.join(run.workload.prefix())
        } else {
            run.destination.to_path_buf()
        },
        upload_prefix: run.upload_prefix.to_owned(),
        concurrency: CONCURRENCY,
        part_concurrency: PART_CONCURRENCY,
        part_size: PART_MIB << 20,
        threshold: THRESHOLD_MIB << 20,
    };
    let path = run.scratch.join(format!("{}.json", peer.slug()));
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(path)
}
