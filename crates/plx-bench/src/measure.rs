//! One run of one tool: wall time, the client's CPU seconds and peak RSS (GNU time, which
//! reports the process tree it waited for), and the server's CPU seconds from /proc.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measured {
    pub wall: f64,
    pub client_cpu: f64,
    pub server_cpu: f64,
    pub rss_kib: u64,
    /// Why the run does not count: a failure, a lost file, a retry or a 5xx.
    pub invalid: Option<String>,
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

/// Runs `command` under GNU time with a timeout, and the server's CPU around it.
pub fn run(
    command: Command,
    server_pid: u32,
    timeout: Duration,
    scratch: &Path,
) -> anyhow::Result<(Measured, String)> {
    let times = scratch.join("time.txt");
    let program = command.get_program().to_owned();
    let mut timed = Command::new("/usr/bin/time");
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
    let server_before = server_cpu(server_pid)?;
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
    let server_after = server_cpu(server_pid)?;
    let output = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|handle| handle.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut measured = Measured {
        server_cpu: server_after - server_before,
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

/// User plus system CPU seconds of a process so far (fields 14 and 15 of /proc/PID/stat, in
/// clock ticks, 100 per second on Linux).
pub fn server_cpu(pid: u32) -> anyhow::Result<f64> {
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
