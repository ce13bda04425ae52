//! `soak`: the long fault and kill runs, and the section of `docs/RELIABILITY.md` they write.
//!
//! The tests hold every run to its invariants and append what each run counted to a record
//! (`plx_testkit::soak`); this adds the record up into tables. A run that breaks an invariant
//! still lands in the tables (as a non-zero count) before its test fails, so the document says
//! what happened either way, with the commit and the date.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::Value;

use crate::{
    cargo,
    images::{Binaries, garage_image, images},
    report, status,
    test::{Lints, remove_test_containers},
    venvs::tools_venv,
};

/// What to run.
pub(crate) struct Soak {
    /// Runs per fault class, for downloads and for uploads.
    pub(crate) per_class: u32,
    /// SIGKILLs at random moments.
    pub(crate) kills: u32,
    /// Also the 100,000-object runs (s3s-fs under a 256-file limit, and Garage).
    pub(crate) many: bool,
}

const BEGIN: &str =
    "<!-- soak: begin (written by `cargo xtask soak`; edit the command, not this) -->";
const END: &str = "<!-- soak: end -->";

pub(crate) fn run(root: &Path, soak: &Soak) -> anyhow::Result<()> {
    images(root, Binaries::Tests)?;
    let tools = tools_venv(root)?;
    let lints = Lints::new()?;
    let record = root.join("target/plx-soak/record.jsonl");
    std::fs::create_dir_all(root.join("target/plx-soak"))?;
    let _ = std::fs::remove_file(&record);
    let started = Instant::now();
    let test = |package: &str, filter: &str| {
        let mut command = cargo();
        lints
            .apply(&mut command)
            .args(["test", "-q", "-p", package, "--test", "it", "--", filter])
            .env("PLX_SOAK_RECORD", &record)
            .env("PLX_MOTO_SERVER", tools.join("bin/moto_server"))
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command
    };
    let faults =
        status(test("plx-transfer", "faults::").env("PLX_FAULT_RUNS", soak.per_class.to_string()));
    // The kills run whatever the fault runs found: the tables say what each part saw.
    let killed = status(
        test("plx-init", "kill::kills_at_random_moments").env("PLX_KILLS", soak.kills.to_string()),
    );
    let result = faults.and(killed);
    remove_test_containers();
    let command = format!(
        "cargo xtask soak --per-class {} --kills {}",
        soak.per_class, soak.kills
    );
    let written = write(root, &record, &command, started.elapsed());
    let result = result.and(written);
    if !soak.many {
        return result;
    }
    result
        .and_then(|()| {
            status(
                test("plx-init", "many::")
                    .arg("--nocapture")
                    .env("PLX_MANY_OBJECTS", "100000"),
            )
        })
        .and_then(|()| {
            garage_image(root)?;
            status(
                test("plx-init", "many::many_small_objects_from_garage")
                    .args(["--ignored", "--nocapture"])
                    .env("PLX_MANY_OBJECTS", "100000"),
            )
        })
        .inspect(|()| remove_test_containers())
}

/// The record added up into `docs/RELIABILITY.md`'s generated section.
fn write(root: &Path, record: &Path, command: &str, took: Duration) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(record)
        .with_context(|| format!("the soak wrote no record at {}", record.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds a line that is not JSON", record.display()))?;
    let mut md = format!(
        "{}, in {} min, on this machine (2 cores); the runs' own record is \
         `target/plx-soak/record.jsonl`.\n\n",
        report::stamp(root, command),
        took.as_secs() / 60
    );
    md += &faults(&lines, "download");
    md += &faults(&lines, "upload");
    md += &kills(&lines);
    report::write(root, (BEGIN, END), &md)
}

fn number(line: &Value, field: &str) -> u64 {
    line[field]
        .as_u64()
        .or_else(|| line[field].as_bool().map(u64::from))
        .unwrap_or(0)
}

/// Sums of `fields` over `lines`, grouped by `key`, in first-seen order, with a total.
fn sums(lines: &[&Value], key: &str, fields: &[&str]) -> Vec<(String, u64, Vec<u64>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    for line in lines {
        let name = line[key].as_str().unwrap_or("?").to_owned();
        if !groups.contains_key(&name) {
            order.push(name.clone());
        }
        let group = groups
            .entry(name)
            .or_insert_with(|| (0, vec![0; fields.len()]));
        group.0 += 1;
        for (sum, field) in group.1.iter_mut().zip(fields) {
            *sum += number(line, field);
        }
    }
    let mut rows: Vec<(String, u64, Vec<u64>)> = order
        .into_iter()
        .filter_map(|name| {
            let (runs, sums) = groups.remove(&name)?;
            Some((name, runs, sums))
        })
        .collect();
    let total = rows.iter().fold(
        ("**total**".to_owned(), 0, vec![0; fields.len()]),
        |(name, runs, mut sums), row| {
            for (sum, value) in sums.iter_mut().zip(&row.2) {
                *sum += value;
            }
            (name, runs + row.1, sums)
        },
    );
    rows.push(total);
    rows
}

fn table(head: &[&str], rows: &[(String, u64, Vec<u64>)]) -> String {
    let mut md = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for (name, runs, sums) in rows {
        let cells: Vec<String> = sums.iter().map(u64::to_string).collect();
        md += &format!("| {name} | {runs} | {} |\n", cells.join(" | "));
    }
    md
}

fn faults(lines: &[Value], direction: &str) -> String {
    let runs: Vec<&Value> = lines
        .iter()
        .filter(|line| line["soak"] == "faults" && line["direction"] == direction)
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    let (title, fields, head): (&str, &[&str], &[&str]) = if direction == "download" {
        (
            "Downloads",
            &[
                "injected",
                "failed",
                "named",
                "refetched",
                "refetched_landed",
                "bad",
                "unnamed",
                "rerun_exact",
                "leftovers",
            ],
            &[
                "class",
                "runs",
                "faults injected",
                "runs that failed",
                "objects named failed",
                "fetched by the reruns",
                "of them landed before",
                "corrupt or partial files",
                "unnamed or unaccounted",
                "reruns exact",
                "temporaries left",
            ],
        )
    } else {
        (
            "Uploads",
            &[
                "injected",
                "failed",
                "named",
                "landed",
                "bad",
                "unnamed",
                "rerun_exact",
            ],
            &[
                "class",
                "runs",
                "faults injected",
                "runs that failed",
                "objects named failed",
                "objects stored by the first run",
                "corrupt or partial objects stored",
                "unnamed failures",
                "reruns exact",
            ],
        )
    };
    format!(
        "**{title}** ({} runs):\n\n{}\n",
        runs.len(),
        table(head, &sums(&runs, "class", fields))
    )
}

fn kills(lines: &[Value]) -> String {
    let kills: Vec<&Value> = lines
        .iter()
        .filter(|line| line["soak"] == "kills")
        .collect();
    if kills.is_empty() {
        return String::new();
    }
    let fields = [
        "visible",
        "torn",
        "temporaries",
        "bad_entries",
        "torn_manifest",
        "failed_reruns",
    ];
    let head = [
        "scene",
        "kills",
        "files visible at the kill",
        "torn files or objects",
        "temporaries after the rerun",
        "bad cache entries",
        "torn manifests",
        "failed reruns",
    ];
    // Where in their runs the kills fell, as a share of an unkilled run.
    let mut shares: Vec<f64> = kills
        .iter()
        .map(|line| number(line, "at_ms") as f64 / number(line, "of_ms").max(1) as f64)
        .collect();
    shares.sort_by(f64::total_cmp);
    let share = |q: f64| shares[((shares.len() - 1) as f64 * q) as usize] * 100.0;
    format!(
        "**SIGKILLs** ({} at seeded moments; over each scene's unkilled run, the moments fell at \
         {:.0}% (first), {:.0}% (median) and {:.0}% (last)):\n\n{}\n",
        kills.len(),
        share(0.0),
        share(0.5),
        share(1.0),
        table(&head, &sums(&kills, "scene", &fields))
    )
}
