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
    Soak(crate::soak::Soak),
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
        (Some("soak"), _) => {
            let mut soak = crate::soak::Soak {
                per_class: 20,
                kills: 40,
                many: false,
            };
            let mut at = 1;
            while let Some(flag) = arg(at) {
                let value = || {
                    arg(at + 1).with_context(|| format!("{flag} takes a number"))?;
                    number(at + 1, 0, flag)
                };
                match flag {
                    "--per-class" => soak.per_class = value()?,
                    "--kills" => soak.kills = value()?,
                    "--many" => {
                        soak.many = true;
                        at -= 1;
                    }
                    other => bail!("soak takes --per-class N, --kills N and --many, not `{other}`"),
                }
                at += 2;
            }
            Task::Soak(soak)
        }
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
