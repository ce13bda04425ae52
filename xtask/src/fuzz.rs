//! `fuzz`: the cargo-fuzz targets under `fuzz/`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context;

use crate::{cargo, report, status};

/// Every target under `fuzz/fuzz_targets/`; `cargo xtask test` replays each one's corpus.
const TARGETS: [&str; 6] = [
    "catalog", "review", "key_path", "rendered", "manifest", "pod",
];

/// The fuzz targets under `fuzz/`, each for `seconds`, with cargo-fuzz (installed under
/// `target/` when missing) on the stable toolchain: `RUSTC_BOOTSTRAP=1` lets it pass its
/// nightly flags, and without a sanitizer (safe Rust) it needs no nightly runtime.
pub(crate) fn run(root: &Path, seconds: u32) -> anyhow::Result<()> {
    let tools = root.join("target/plx-tools/cargo-fuzz");
    let installed = tools.join("bin/cargo-fuzz");
    let on_path = Command::new("cargo-fuzz")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    let program = if on_path {
        PathBuf::from("cargo-fuzz")
    } else {
        if !installed.exists() {
            status(
                cargo()
                    .args([
                        "install",
                        "--quiet",
                        "--locked",
                        "cargo-fuzz@0.13.2",
                        "--root",
                    ])
                    .arg(&tools),
            )?;
        }
        installed
    };
    let dir = root.join("fuzz");
    let mut rows = Vec::new();
    let mut crashed = Vec::new();
    for target in TARGETS {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let output = Command::new(&program)
            .args(["fuzz", "run", "-s", "none", target])
            .arg(&corpus)
            .arg(dir.join("regressions").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // Bounded memory and no hangs are part of the verdict.
            .args(["-rss_limit_mb=1024", "-timeout=10"])
            .current_dir(&dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", root.join("target/fuzz"))
            .stdout(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        let log = String::from_utf8_lossy(&output.stderr);
        eprint!("{}", tail(&log, 5));
        // libFuzzer's last words: `Done 2166389 runs in 61 second(s)`.
        let runs = log.lines().rev().find_map(|line| {
            line.strip_prefix("Done ")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
        let inputs = std::fs::read_dir(&corpus)?.count();
        let verdict = if output.status.success() {
            "0".to_owned()
        } else {
            crashed.push(target);
            format!("**1** (`fuzz/artifacts/{target}`)")
        };
        rows.push(format!(
            "| `{target}` | {seconds} s | {} | {inputs} | {verdict} |",
            runs.map_or("?".to_owned(), |runs| runs.to_string())
        ));
    }
    let md = format!(
        "{}.\n\n| target | time | runs | corpus inputs | crashes |\n|---|---:|---:|---:|---|\n{}\n",
        report::stamp(root, &format!("cargo xtask fuzz {seconds}")),
        rows.join("\n")
    );
    report::write(root, (BEGIN, END), &md)?;
    if !crashed.is_empty() {
        anyhow::bail!(
            "{}: a crash is saved under fuzz/artifacts/<target>; add it to fuzz/regressions/<target>",
            crashed.join(", ")
        );
    }
    Ok(())
}

const BEGIN: &str =
    "<!-- fuzz: begin (written by `cargo xtask fuzz`; edit the command, not this) -->";
const END: &str = "<!-- fuzz: end -->";

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    tail.push('\n');
    tail
}
