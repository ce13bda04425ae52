//! One run of one tool: wall time, the client's CPU seconds and peak RSS (GNU time, which
//! reports the process tree it waited for), the server's CPU seconds from /proc and this
//! process's own (the latency proxy's, on a path through it); and the CPU limit the tool runs
//! under, as in the pod.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measured {
    pub wall: f64,
    pub client_cpu: f64,
    pub server_cpu: f64,
    /// This process's CPU seconds during the run: on a path through the latency proxy, mostly
    /// the proxy's, which shares the two cores with the server and the tool.
    pub proxy_cpu: f64,
    /// Seconds the CPU limit held the tool back (its cgroup's throttled time): a tool that
    /// bursts past its quota in a period waits out the rest of it, even when on average it
    /// used far less.
    pub throttled: f64,
    pub rss_kib: u64,
    /// Why the run does not count: a failure, a lost file, a retry or a 5xx.
    pub invalid: Option<String>,
}

impl Measured {
    /// `  INVALID: why` for a run's line, where the run does not count; empty where it does.
    pub fn invalid_note(&self) -> String {
        self.invalid
            .as_ref()
            .map(|why| format!("  INVALID: {why}"))
            .unwrap_or_default()
    }
}

/// Every sample of a run to `path`, one JSON object a line, to be read again without a rerun.
pub fn write_jsonl<T: serde::Serialize>(path: &Path, samples: &[T]) -> anyhow::Result<()> {
    let lines: Vec<String> = samples
        .iter()
        .map(|sample| serde_json::to_string(sample).unwrap_or_default())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// With `--quick` (a correctness check, not a measurement), an invalid run fails the whole:
/// each named (`runs`: a run's name and its measure), then how many of `what` were invalid.
pub fn refuse_invalid<'a>(
    quick: bool,
    what: &str,
    runs: impl IntoIterator<Item = (String, &'a Measured)>,
) -> anyhow::Result<()> {
    if !quick {
        return Ok(());
    }
    let mut invalid = 0;
    for (name, measured) in runs {
        if let Some(why) = &measured.invalid {
            eprintln!("plx-bench: {name}: {why}");
            invalid += 1;
        }
    }
    if invalid > 0 {
        bail!("{invalid} {what} were invalid");
    }
    Ok(())
}

/// Words in a tool's output that mean it retried or met a server error.
const TROUBLE: &[&str] = &[
    "retry",
    "retrying",
    "slowdown",
    "internalerror",
    "internal error",
    "status code: 5",
    "statuscode: 5",
    "500 internal",
    "503 slow",
];

/// A CPU limit for the tools: a cgroup of this run's whose CFS quota is `cpus` CPUs' time.
///
/// Polyaxon runs its init container with `limits: {cpu: 1}` (`_auxiliaries/init.py`; this
/// project's chart does the same), so a tool pulling data in the pod gets one CPU's time however
/// many cores the node has, and runtimes that size themselves by the quota see one CPU (Rust's
/// `available_parallelism`, so tokio's workers; Go from 1.25). Without it a tool here would
/// run as it never does in the pod. The server and the latency proxy are not limited.
pub struct Cpus {
    dir: PathBuf,
    pub cpus: f64,
}

impl Cpus {
    /// A fresh cgroup limited to `cpus` CPUs, under the CPU controller's hierarchy (cgroup v2
    /// where it holds the controller, else v1's `cpu`).
    pub fn new(cpus: f64) -> anyhow::Result<Cpus> {
        let period: u64 = 100_000;
        let quota = (cpus * period as f64).round() as u64;
        if quota < 1_000 {
            bail!("--cpus {cpus}: give at least 0.01, or 0 for no limit");
        }
        // One cgroup per limit, so that two in one process (tests in parallel) are apart.
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "plx-bench-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let unified = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(unified.join("cgroup.controllers"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "cpu"));
        let made = if v2 {
            // Under the root: a non-root cgroup that holds processes cannot give its children
            // a controller.
            let dir = unified.join(name);
            std::fs::write(unified.join("cgroup.subtree_control"), "+cpu")
                .and_then(|()| std::fs::create_dir_all(&dir))
                .and_then(|()| std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")))
                .map(|()| dir)
        } else {
            let base = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"]
                .into_iter()
                .map(Path::new)
                .find(|base| base.join("cpu.cfs_quota_us").exists())
                .unwrap_or(Path::new("/sys/fs/cgroup/cpu"));
            let dir = base.join(name);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()))
                .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()))
                .map(|()| dir)
        };
        let dir = made.map_err(|error| {
            anyhow::anyhow!(
                "--cpus {cpus} needs a cgroup CPU controller this user can write ({error}); run as root, or give --cpus 0 to run the tools without a CPU limit"
            )
        })?;
        Ok(Cpus { dir, cpus })
    }

    /// The file a process writes its pid to, to enter the cgroup.
    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Seconds the quota has held the cgroup back so far: `throttled_usec` in cgroup v2's
    /// `cpu.stat`, `throttled_time` (nanoseconds) in v1's; 0 where neither can be read.
    pub fn throttled(&self) -> f64 {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |name: &str| {
            stat.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
        };
        field("throttled_usec ")
            .map(|usec| usec / 1e6)
            .or_else(|| field("throttled_time ").map(|nsec| nsec / 1e9))
            .unwrap_or(0.0)
    }
}

impl Drop for Cpus {
    fn drop(&mut self) {
        // Every tool has ended; an empty cgroup is removed with rmdir.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Runs `command` under GNU time with a timeout, and the server's CPU around it; within `cpus`
/// when given.
pub fn run(
    command: Command,
    cpus: Option<&Cpus>,
    server_pid: u32,
    timeout: Duration,
    scratch: &Path,
) -> anyhow::Result<(Measured, String)> {
    let times = scratch.join("time.txt");
    let program = command.get_program().to_owned();
    let mut timed = match cpus {
        // The shell enters the cgroup and becomes GNU time, whose children inherit it.
        Some(cpus) => {
            let mut shell = Command::new("sh");
            shell
                .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
                .arg(cpus.procs())
                .arg("/usr/bin/time");
            shell
        }
        None => Command::new("/usr/bin/time"),
    };
    timed
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&times)
        .arg(&program)
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(name, value),
            None => timed.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let server_before = process_cpu(server_pid)?;
    let own_before = process_cpu(std::process::id())?;
    let throttled_before = cpus.map(Cpus::throttled);
    let started = Instant::now();
    let mut child = timed
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    // Output is read on threads, so a chatty tool never blocks on a full pipe.
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let server_after = process_cpu(server_pid)?;
    let own_after = process_cpu(std::process::id())?;
    let throttled = match (cpus, throttled_before) {
        (Some(cpus), Some(before)) => cpus.throttled() - before,
        _ => 0.0,
    };
    let output = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|handle| handle.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut measured = Measured {
        server_cpu: server_after - server_before,
        proxy_cpu: own_after - own_before,
        throttled,
        ..Measured::default()
    };
    let Some(status) = status else {
        measured.invalid = Some(format!("timed out after {} s", timeout.as_secs()));
        return Ok((measured, output));
    };
    let text = std::fs::read_to_string(&times).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" first when it failed.
    let last = text.lines().last().unwrap_or("");
    let fields: Vec<&str> = last.split_whitespace().collect();
    if fields.len() != 4 {
        bail!("GNU time said {text:?}");
    }
    measured.wall = fields[0].parse()?;
    measured.client_cpu = fields[1].parse::<f64>()? + fields[2].parse::<f64>()?;
    measured.rss_kib = fields[3].parse()?;
    // Finer than GNU time's hundredths, for the quick runs.
    measured.wall = started.elapsed().as_secs_f64().min(measured.wall + 0.01);
    if !status.success() {
        measured.invalid = Some(format!("exit {}: {}", status, tail(&output)));
    } else {
        let lower = output.to_lowercase();
        if let Some(word) = TROUBLE.iter().find(|word| lower.contains(*word)) {
            measured.invalid = Some(format!(
                "the tool reported `{}`: {}",
                word.trim(),
                tail(&output)
            ));
        }
    }
    Ok((measured, output))
}

fn reader<R: std::io::Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

pub fn tail(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// User plus system CPU seconds of a process (the server, or this one) so far: fields 14 and
/// 15 of /proc/PID/stat, in clock ticks, 100 per second on Linux.
pub fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("the server (pid {pid}) is gone"))?;
    // The command name may hold spaces; the fields after it are plain.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `command` run as a tool is, within `cpus` if given, in a scratch directory of its own;
    /// it must be a valid run.
    fn measured(command: Command, cpus: Option<&Cpus>) -> (Measured, String) {
        let scratch = tempfile::tempdir().expect("scratch");
        let (measured, output) = run(
            command,
            cpus,
            std::process::id(),
            Duration::from_secs(30),
            scratch.path(),
        )
        .expect("the run");
        assert!(measured.invalid.is_none(), "{:?}", measured.invalid);
        (measured, output)
    }

    // Writes to the cgroup hierarchy: root, as CI and `cargo xtask bench` run.
    #[test]
    fn a_tool_runs_within_the_cpu_limit() {
        let cpus = Cpus::new(1.0).expect("a CPU cgroup");
        let quota = ["cpu.max", "cpu.cfs_quota_us"]
            .iter()
            .find_map(|file| std::fs::read_to_string(cpus.dir.join(file)).ok())
            .expect("the cgroup's quota");
        assert!(quota.starts_with("100000"), "quota {quota:?}");
        let mut command = Command::new("cat");
        command.arg("/proc/self/cgroup");
        let (_, output) = measured(command, Some(&cpus));
        let name = cpus.dir.file_name().expect("a name").to_string_lossy();
        // v2: `0::/plx-bench-N-M`; v1: `N:cpu,cpuacct:/plx-bench-N-M`.
        let inside = output.lines().any(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
            path.is_some_and(|path| path.ends_with(&format!("/{name}")))
                && controllers
                    .is_some_and(|list| list.is_empty() || list.split(',').any(|c| c == "cpu"))
        });
        assert!(inside, "the tool ran outside {name}: {output}");
        let dir = cpus.dir.clone();
        drop(cpus);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }

    #[test]
    fn the_time_the_quota_holds_a_tool_back_is_measured() {
        // A twentieth of a CPU for a tool that would take all of one for half a second: the
        // kernel holds it back most of each period.
        let cpus = Cpus::new(0.05).expect("a CPU cgroup");
        let mut command = Command::new("sh");
        command.args(["-c", "timeout 0.5 sh -c 'while :; do :; done'; true"]);
        let (held, _) = measured(command, Some(&cpus));
        assert!(
            held.throttled > 0.2,
            "held back {:.3} s of a {:.3} s run at 0.05 CPUs (client CPU {:.3} s)",
            held.throttled,
            held.wall,
            held.client_cpu
        );
        // Without a limit nothing is held back.
        let mut command = Command::new("sh");
        command.args(["-c", "timeout 0.2 sh -c 'while :; do :; done'; true"]);
        let (free, _) = measured(command, None);
        assert_eq!(free.throttled, 0.0);
    }
}
