//! `plx-init validate`.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use plx_connections::{Catalog, Content, Diagnostic, Form, Report};
use serde::Serialize;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A catalog that job files are checked against (any catalog form); repeat for several.
    #[arg(long = "catalog", value_name = "FILE")]
    catalogs: Vec<PathBuf>,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Files to validate: catalogs in any form, or Polyaxon operations and components; `-` is stdin.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Serialize)]
struct Output<'a> {
    files: Vec<FileOutput<'a>>,
}

#[derive(Serialize)]
struct FileOutput<'a> {
    file: String,
    form: Option<Form>,
    diagnostics: &'a [Diagnostic],
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // Read everything first: an unreadable file is a usage problem (exit 2), whatever the others hold.
    let mut catalog_texts = Vec::new();
    for path in &args.catalogs {
        catalog_texts.push((path, read(path)?));
    }
    let mut texts = Vec::new();
    for path in &args.files {
        texts.push((path, read(path)?));
    }

    let mut reports: Vec<(String, Report)> = Vec::new();
    let mut catalogs: Vec<Catalog> = Vec::new();
    for (path, text) in &catalog_texts {
        let report = plx_connections::validate(text, &[]);
        match &report.content {
            Some(Content::Catalog(catalog)) => catalogs.push(catalog.clone()),
            Some(Content::Job(_)) => anyhow::bail!(
                "--catalog {} is a job, not a connection catalog",
                path.display()
            ),
            None => {}
        }
        reports.push((path.display().to_string(), report));
    }
    for (path, text) in &texts {
        reports.push((
            path.display().to_string(),
            plx_connections::validate(text, &catalogs),
        ));
    }

    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let output = Output {
                files: reports
                    .iter()
                    .map(|(file, report)| FileOutput {
                        file: file.clone(),
                        form: report.form,
                        diagnostics: &report.diagnostics,
                    })
                    .collect(),
            };
            serde_json::to_writer_pretty(&mut stdout, &output)?;
            writeln!(stdout)?;
        }
        Format::Text => write_text(&mut stdout, &reports)?,
    }
    let failed = reports.iter().any(|(_, report)| report.has_errors());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_text(out: &mut impl Write, reports: &[(String, Report)]) -> anyhow::Result<()> {
    let (mut errors, mut warnings) = (0, 0);
    for (file, report) in reports {
        for diagnostic in &report.diagnostics {
            let path = if diagnostic.path.is_empty() {
                "/"
            } else {
                &diagnostic.path
            };
            writeln!(
                out,
                "{file}: {path}: {}[{}]: {}",
                diagnostic.severity.as_str(),
                diagnostic.code,
                diagnostic.message
            )?;
            if diagnostic.is_error() {
                errors += 1
            } else {
                warnings += 1
            }
        }
        if !report.has_errors() {
            writeln!(out, "{file}: ok ({})", summary(report))?;
        }
    }
    writeln!(
        out,
        "{errors} {}, {warnings} {} in {} {}",
        plural(errors, "error"),
        plural(warnings, "warning"),
        reports.len(),
        plural(reports.len(), "file")
    )?;
    Ok(())
}

fn summary(report: &Report) -> String {
    match &report.content {
        Some(Content::Catalog(catalog)) => {
            let store = catalog
                .artifacts_store
                .as_ref()
                .map(|store| format!(", artifacts store `{}`", store.name))
                .unwrap_or_default();
            format!(
                "{} {}{store}",
                catalog.connections.len(),
                plural(catalog.connections.len(), "connection")
            )
        }
        Some(Content::Job(sections)) => {
            let init: usize = sections.iter().map(|section| section.init.len()).sum();
            let names: usize = sections
                .iter()
                .map(|section| section.connections.len())
                .sum();
            format!(
                "job: {names} {} named, {init} init {}",
                plural(names, "connection"),
                plural(init, "entry").replace("entrys", "entries")
            )
        }
        None => "nothing to check".to_owned(),
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
