//! The command line, `cargo xtask TASK [ARGS]`, parsed into a [`Task`]. A handful of flags, so no
//! parser crate: xtask builds in seconds on a fresh machine.

use anyhow::{Context, bail};

pub(crate) enum Task {
    Help,
    Demo,
    Test,
    Conformance {
        filter: Option<String>,
    },
    Schemas {
        check: bool,
    },
    Chart,
    Wheel,
    /// The transfer benchmark; the arguments go to plx-bench as they are.
    Bench {
        args: Vec<String>,
    },
    BenchWebhook {
        seconds: u32,
    },
    Soak {
        runs: u32,
    },
    Fuzz {
        seconds: u32,
    },
    Images {
        garage: bool,
    },
    /// plx-init layered on Polyaxon's own init image.
    PolyaxonInit {
        base: String,
    },
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Task> {
    let arg = |index: usize| args.get(index).map(String::as_str);
    let number = |index: usize, default: u32, what: &str| -> anyhow::Result<u32> {
        arg(index).map_or(Ok(default), |text| {
            text.parse()
                .with_context(|| format!("{what} must be a whole number, not `{text}`"))
        })
    };
    Ok(match (arg(0), arg(1)) {
        (Some("help" | "--help" | "-h"), _) => Task::Help,
        (Some("demo"), None) => Task::Demo,
        (Some("test"), None) => Task::Test,
        (Some("conformance"), filter) => Task::Conformance {
            filter: filter.map(str::to_owned),
        },
        (Some("schemas"), None) => Task::Schemas { check: false },
        (Some("schemas"), Some("--check")) => Task::Schemas { check: true },
        (Some("chart"), None) => Task::Chart,
        (Some("wheel"), None) => Task::Wheel,
        (Some("bench"), Some("webhook")) => Task::BenchWebhook {
            seconds: number(2, 60, "bench webhook SECONDS")?,
        },
        (Some("bench"), _) => Task::Bench {
            args: args[1..].to_vec(),
        },
        (Some("soak"), _) => Task::Soak {
            runs: number(1, 20, "soak RUNS")?,
        },
        (Some("fuzz"), _) => Task::Fuzz {
            seconds: number(1, 60, "fuzz SECONDS")?,
        },
        (Some("images"), None) => Task::Images { garage: false },
        (Some("images"), Some("--garage")) => Task::Images { garage: true },
        (Some("images"), Some("--polyaxon-init")) => Task::PolyaxonInit {
            base: arg(2)
                .context("--polyaxon-init takes Polyaxon's init image, e.g. polyaxon/polyaxon-init:2.18.0")?
                .to_owned(),
        },
        _ => bail!("unknown or missing task: {}", args.join(" ")),
    })
}
