//! The results as Markdown tables (median [min–max], ratios to plx-init) in the transfer
//! section of `docs/benchmarks.md`, and a chart of the wall-time ratios beside it.

use std::{fmt::Write as _, path::Path};

use plotters::prelude::*;

use crate::{Sample, peers::Peer, workload::Workload};

pub struct Context {
    /// `transfer` or `latency`.
    pub section: &'static str,
    pub server: String,
    pub rounds: usize,
    /// The CPU limit every tool ran under, if any.
    pub cpus: Option<f64>,
    pub versions: Vec<(String, String)>,
    /// Where downloads land, with its file system (`/dev/shm/plx-bench (tmpfs)`).
    pub landing: String,
}

/// The section a run writes: `transfer` (loopback, with its chart) or `latency` (a run with
/// `--latency`, its tables per path, targets and the in-flight plot), each between its markers.
pub fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- {section}:begin (written by `cargo xtask bench`) -->"),
        format!("<!-- {section}:end -->"),
    )
}

struct Row {
    label: String,
    wall: Stats,
    cpu: Stats,
    server: f64,
    proxy: f64,
    rss_mib: f64,
    invalid: usize,
}

#[derive(Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(values: &[f64]) -> Option<Stats> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    (n > 0).then(|| Stats {
        median: if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        },
        min: sorted[0],
        max: sorted[n - 1],
    })
}

fn rows(workload: &Workload, peers: &[Peer], samples: &[&Sample]) -> Vec<Row> {
    peers
        .iter()
        .filter_map(|peer| {
            let label = peer.label();
            let mine: Vec<&Sample> = samples
                .iter()
                .copied()
                .filter(|sample| sample.workload == workload.name && sample.peer == label)
                .collect();
            let valid: Vec<&&Sample> = mine
                .iter()
                .filter(|sample| sample.measured.invalid.is_none())
                .collect();
            let pick = |f: fn(&Sample) -> f64| valid.iter().map(|s| f(s)).collect::<Vec<_>>();
            Some(Row {
                label,
                wall: stats(&pick(|s| s.measured.wall))?,
                cpu: stats(&pick(|s| s.measured.client_cpu))?,
                server: stats(&pick(|s| s.measured.server_cpu))?.median,
                proxy: stats(&pick(|s| s.measured.proxy_cpu))?.median,
                rss_mib: stats(&pick(|s| s.measured.rss_kib as f64))?.max / 1024.0,
                invalid: mine.len() - valid.len(),
            })
            .or_else(|| {
                // Every run invalid: still a row, so the failure shows.
                (!mine.is_empty()).then(|| Row {
                    label: peer.label(),
                    wall: Stats {
                        median: f64::NAN,
                        min: f64::NAN,
                        max: f64::NAN,
                    },
                    cpu: Stats {
                        median: f64::NAN,
                        min: f64::NAN,
                        max: f64::NAN,
                    },
                    server: f64::NAN,
                    proxy: f64::NAN,
                    rss_mib: f64::NAN,
                    invalid: mine.len(),
                })
            })
        })
        .collect()
}

pub fn write(
    path: &Path,
    context: &Context,
    workloads: &[Workload],
    peers: &[Peer],
    samples: &[Sample],
    skipped: &[(&str, Peer)],
) -> anyhow::Result<()> {
    let chart = path.with_file_name("benchmarks-transfer.svg");
    let (begin_marker, end_marker) = markers(context.section);
    let latency = context.section == "latency";
    let mut md = String::new();
    writeln!(md, "{begin_marker}")?;
    writeln!(
        md,
        "Measured {} on this machine (2 vCPU, 24 GiB; {}) against one {} server, downloads landing on {}. Median of {} rounds [min–max] after a warm-up, tools in rotated order; every run checked (downloads: the whole tree against a sha256 manifest, nothing extra; uploads: every object's size, the MD5 of every single-part object, 16 ranges of each multipart one). Ratios are the peer's median over plx-init's: above 1 means plx-init is faster or cheaper. CPU is the client's user+system seconds, children included; the proxy's is this harness's own while the tool ran, on a path through the latency proxy.\n",
        date(),
        match context.cpus {
            Some(cpus) => format!(
                "each tool limited to {cpus} CPU by a cgroup quota, as Polyaxon's init container is (`limits: {{cpu: 1}}`), beside an unlimited server and latency proxy on the same two cores"
            ),
            None => "no CPU limit: client and server share both cores".to_owned(),
        },
        context.server,
        context.landing,
        context.rounds
    )?;
    if !latency {
        writeln!(
            md,
            "![wall time, relative to plx-init](benchmarks-transfer.svg)\n"
        )?;
    }
    writeln!(md, "| tool | version |\n|---|---|")?;
    for (tool, version) in &context.versions {
        writeln!(md, "| {tool} | {version} |")?;
    }
    writeln!(md)?;
    // In the order they ran: straight to the server first, then each latency.
    let mut networks: Vec<&str> = Vec::new();
    for sample in samples {
        if !networks.contains(&sample.network.as_str()) {
            networks.push(&sample.network);
        }
    }
    let mut panels = Vec::new();
    for (index, network) in networks.iter().enumerate() {
        let here: Vec<&Sample> = samples
            .iter()
            .filter(|sample| sample.network == *network)
            .collect();
        let level = if networks.len() > 1 {
            writeln!(md, "### Over {network}\n")?;
            "####"
        } else {
            "###"
        };
        for workload in workloads {
            if !here.iter().any(|sample| sample.workload == workload.name) {
                continue;
            }
            let panel = table(&mut md, level, workload, peers, &here, skipped)?;
            if index == 0 {
                panels.push((workload.name, panel));
            }
        }
    }
    if networks.len() > 1 {
        targets(&mut md, &networks, samples)?;
    }
    let inflight = path.with_file_name("benchmarks-inflight.svg");
    if draw_steps(&inflight, samples)? {
        writeln!(
            md,
            "![plx-init's requests in flight over time, W1 near and far](benchmarks-inflight.svg)\n"
        )?;
    }
    writeln!(md, "{end_marker}")?;
    let heading = if latency {
        "Transfers from a store far away"
    } else {
        "Transfers"
    };
    splice(path, (&begin_marker, &end_marker), heading, &md)?;
    if latency {
        return Ok(());
    }
    draw(&chart, &panels)
}

/// Puts `md` (which opens and closes with the `markers` given) in place of that section of the
/// report at `path`, or at its end under `heading` where the section is not there yet.
pub fn splice(
    path: &Path,
    (begin, end): (&str, &str),
    heading: &str,
    md: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (text.find(begin), text.find(end)) {
        (Some(at), Some(to)) if at < to => format!(
            "{}{}{}",
            &text[..at],
            md.trim_end(),
            &text[to + end.len()..]
        ),
        _ => format!("{text}\n## {heading}\n\n{md}"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// One workload's table (every tool's medians, spreads and ratios to plx-init) and its panel of
/// the chart: each tool's median wall time over plx-init's.
fn table(
    md: &mut String,
    level: &str,
    workload: &Workload,
    peers: &[Peer],
    samples: &[&Sample],
    skipped: &[(&str, Peer)],
) -> anyhow::Result<Vec<(String, f64)>> {
    let rows = rows(workload, peers, samples);
    let objects = workload.wanted().len() as f64;
    let gib = workload.bytes() as f64 / (1u64 << 30) as f64;
    let mb = workload.bytes() as f64 / 1e6;
    let small = objects / gib.max(1e-9) > 1000.0;
    writeln!(md, "{level} {}: {}\n", workload.name, workload.about)?;
    writeln!(
        md,
        "| tool | wall s | objects/s | MB/s | client CPU s | CPU {} | server CPU s | proxy CPU s | peak RSS MiB | wall ÷ plx-init | CPU ÷ plx-init |",
        if small {
            "s per 1,000 objects"
        } else {
            "s per GiB"
        }
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    // The harness's own CPU is the proxy's only on a path through it.
    let direct = crate::net::Path::DIRECT.label();
    let proxied = samples.iter().any(|sample| sample.network != direct);
    let ours = rows
        .iter()
        .find(|row| row.label == "plx-init")
        .map(|row| (row.wall.median, row.cpu.median));
    for row in &rows {
        let per = if small {
            row.cpu.median / objects * 1000.0
        } else {
            row.cpu.median / gib
        };
        let (wall_ratio, cpu_ratio) = match ours {
            Some((wall, cpu)) => (row.wall.median / wall, row.cpu.median / cpu),
            None => (f64::NAN, f64::NAN),
        };
        let spread = if row.wall.max > row.wall.min * 1.15 {
            " ⚠"
        } else {
            ""
        };
        writeln!(
            md,
            "| {}{} | {:.2} [{:.2}–{:.2}]{spread} | {:.0} | {:.0} | {:.2} [{:.2}–{:.2}] | {:.3} | {:.2} | {} | {:.0} | {:.2} | {:.2} |",
            row.label,
            if row.invalid > 0 {
                format!(" ({} invalid)", row.invalid)
            } else {
                String::new()
            },
            row.wall.median,
            row.wall.min,
            row.wall.max,
            objects / row.wall.median,
            mb / row.wall.median,
            row.cpu.median,
            row.cpu.min,
            row.cpu.max,
            per,
            row.server,
            if proxied {
                format!("{:.2}", row.proxy)
            } else {
                "–".to_owned()
            },
            row.rss_mib,
            wall_ratio,
            cpu_ratio,
        )?;
    }
    let missing: Vec<String> = skipped
        .iter()
        .filter(|(name, _)| *name == workload.name)
        .map(|(_, peer)| peer.label())
        .collect();
    if !missing.is_empty() {
        writeln!(md, "\nNot run: {} (see below).", missing.join(", "))?;
    }
    writeln!(md)?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let ours = ours?.0;
            (row.wall.median.is_finite()).then(|| (row.label.clone(), row.wall.median / ours))
        })
        .collect::<Vec<_>>())
}

/// One panel per workload: each tool's median wall time over plx-init's, on a log scale.
fn draw(path: &Path, panels: &[(&str, Vec<(String, f64)>)]) -> anyhow::Result<()> {
    let tools: Vec<String> = panels
        .first()
        .map(|(_, rows)| rows.iter().map(|(label, _)| label.clone()).collect())
        .unwrap_or_default();
    let height = 60 + panels.len() as u32 * (tools.len() as u32 * 18 + 50);
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for ((name, rows), area) in panels.iter().zip(areas) {
        let max = rows
            .iter()
            .map(|(_, ratio)| *ratio)
            .fold(2.0f64, f64::max)
            .min(1000.0);
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{name}: wall time ÷ plx-init's (log scale; 1 = as fast)"),
                ("sans-serif", 14),
            )
            .margin(6)
            .x_label_area_size(20)
            .y_label_area_size(230)
            .build_cartesian_2d((0.5f64..max * 1.2).log_scale(), 0..rows.len() as i32)?;
        let labels: Vec<String> = rows.iter().map(|(label, _)| label.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len() + 1)
            .y_label_formatter(&|index| labels.get(*index as usize).cloned().unwrap_or_default())
            .x_label_formatter(&|value| format!("{value:.1}"))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(index, (label, ratio))| {
            let color = if label == "plx-init" {
                RED.to_rgba()
            } else {
                BLUE.mix(0.6)
            };
            Rectangle::new(
                [(0.5, index as i32), (ratio.max(0.5), index as i32 + 1)],
                color.filled(),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

/// The median wall time of `peer` on `workload` over `network`, valid runs only.
fn median_wall(samples: &[Sample], network: &str, workload: &str, peer: &str) -> Option<f64> {
    let walls: Vec<f64> = samples
        .iter()
        .filter(|sample| {
            sample.network == network
                && sample.workload == workload
                && sample.peer == peer
                && sample.measured.invalid.is_none()
        })
        .map(|sample| sample.measured.wall)
        .collect();
    stats(&walls).map(|stats| stats.median)
}

/// The targets, each read off the tables above: met or not, with the figure. A target
/// whose workload did not run over a path at all (W1 and W2 are not run with the bandwidth cap)
/// has no row there; "not run" is a peer that was not asked for.
fn targets(md: &mut String, networks: &[&str], samples: &[Sample]) -> anyhow::Result<()> {
    let ran = |network: &str, workload: &str| {
        samples
            .iter()
            .any(|sample| sample.network == network && sample.workload == workload)
    };
    writeln!(md, "### Targets\n")?;
    writeln!(
        md,
        "The floor's figure is the same ratio with the curl floor in plx-init's place: what a client that only GETs presigned URLs (no listing, no signing, no check) reaches on this machine. A target the floor misses too would need plx-init to be faster than a client that does nothing but fetch.\n"
    )?;
    writeln!(
        md,
        "| over | target | figure | the floor's figure | met |\n|---|---|---|---|---|"
    )?;
    let mut line = |network: &str,
                    target: String,
                    figure: Option<f64>,
                    // `None`: the target has no floor's figure (W3 is against the floor itself).
                    floor: Option<Option<f64>>,
                    met: fn(f64) -> bool| {
        let shown = |value: Option<f64>| value.map_or("not run".to_owned(), |v| format!("{v:.2}"));
        let verdict = match (figure, floor.flatten()) {
            (Some(value), _) if met(value) => "yes",
            (Some(_), Some(floor)) if !met(floor) => "**no** (past the floor)",
            (Some(_), _) => "**no**",
            (None, _) => "–",
        };
        writeln!(
            md,
            "| {network} | {target} | {} | {} | {verdict} |",
            shown(figure),
            floor.map_or("–".to_owned(), shown)
        )
    };
    for network in networks {
        for workload in ["W1", "W2"]
            .into_iter()
            .filter(|workload| ran(network, workload))
        {
            let ours = median_wall(samples, network, workload, "plx-init");
            let floor = median_wall(samples, network, workload, "curl floor");
            let s5cmd = median_wall(samples, network, workload, "s5cmd (defaults)");
            line(
                network,
                format!("{workload}: s5cmd (defaults) ÷ plx-init ≥ 1.3"),
                s5cmd.zip(ours).map(|(theirs, ours)| theirs / ours),
                Some(s5cmd.zip(floor).map(|(theirs, floor)| theirs / floor)),
                |ratio| ratio >= 1.3,
            )?;
            if network.starts_with("20 ms") {
                let polyaxon = median_wall(samples, network, workload, "polyaxon 2.18 (s3fs)");
                line(
                    network,
                    format!("{workload}: Polyaxon's path ÷ plx-init ≥ 10"),
                    polyaxon.zip(ours).map(|(theirs, ours)| theirs / ours),
                    Some(polyaxon.zip(floor).map(|(theirs, floor)| theirs / floor)),
                    |ratio| ratio >= 10.0,
                )?;
            }
        }
        if !ran(network, "W3") {
            continue;
        }
        let ours = median_wall(samples, network, "W3", "plx-init");
        let floor = median_wall(samples, network, "W3", "curl floor");
        line(
            network,
            "W3: plx-init ÷ curl floor ≤ 1.15".to_owned(),
            ours.zip(floor).map(|(ours, floor)| ours / floor),
            None,
            |ratio| ratio <= 1.15,
        )?;
    }
    let rss = samples
        .iter()
        .filter(|sample| sample.peer == "plx-init" && sample.measured.invalid.is_none())
        .map(|sample| sample.measured.rss_kib as f64 / 1024.0)
        .fold(None, |most: Option<f64>, rss| {
            Some(most.map_or(rss, |most| most.max(rss)))
        });
    line(
        "all",
        "plx-init's peak RSS < 64 MiB".to_owned(),
        rss,
        None,
        |mib| mib < 64.0,
    )?;
    writeln!(md)?;
    Ok(())
}

/// plx-init's requests in flight over time (the controller's steps) on W1, at the nearest and
/// the farthest latency measured through the proxy; false when there is nothing to draw.
fn draw_steps(path: &Path, samples: &[Sample]) -> anyhow::Result<bool> {
    let runs: Vec<&Sample> = samples
        .iter()
        .filter(|sample| {
            sample.workload == "W1"
                && sample.peer == "plx-init"
                && sample.round == 0
                && sample.network.ends_with(" ms")
                && !sample.steps.is_empty()
        })
        .collect();
    let delay = |sample: &Sample| {
        sample
            .network
            .trim_end_matches(" ms")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let (Some(near), Some(far)) = (
        runs.iter().min_by_key(|sample| delay(sample)),
        runs.iter().max_by_key(|sample| delay(sample)),
    ) else {
        return Ok(false);
    };
    if delay(near) == delay(far) {
        return Ok(false);
    }
    let longest = [near, far]
        .iter()
        .flat_map(|sample| sample.steps.iter().map(|step| step.at))
        .fold(0.1f64, f64::max);
    let highest = [near, far]
        .iter()
        .flat_map(|sample| sample.steps.iter().map(|step| step.limit as f64))
        .fold(8.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "W1: plx-init's requests in flight (mean per controller step) over the run",
            ("sans-serif", 14),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..longest * 1.05, 0f64..highest * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("requests in flight")
        .draw()?;
    for (sample, color) in [(near, BLUE), (far, RED)] {
        chart
            .draw_series(LineSeries::new(
                sample.steps.iter().map(|step| (step.at, step.in_flight)),
                color.stroke_width(2),
            ))?
            .label(format!("{} (limit dashed)", sample.network))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(LineSeries::new(
            sample.steps.iter().map(|step| (step.at, step.limit as f64)),
            color.mix(0.4).stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

pub fn date() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}
