//! `plx-init validate`.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use plx_connections::{Catalog, Content, Diagnostic, Form, Report};
use serde::Serialize;
use serde_json::Value;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A catalog that job files are checked against (any catalog form); repeat for several.
    #[arg(long = "catalog", value_name = "FILE")]
    catalogs: Vec<PathBuf>,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Files to validate: catalogs in any form, or Polyaxon operations and components; `-` is stdin.
    /// A stream of Kubernetes objects (`helm template ... | plx-init validate -`) is checked object
    /// by object: each ConfigMap or Secret that carries a catalog.
    #[arg(required_unless_present = "post_render", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Act as a Helm post-renderer: check the manifests on stdin object by object, print the
    /// findings on stderr, and write the manifests unchanged on stdout only when there is no error
    /// (the `plx-validate` Helm plugin runs this).
    #[arg(long, conflicts_with_all = ["files", "format", "catalogs"])]
    post_render: bool,
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
    if args.post_render {
        return post_render();
    }
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
    let mut stream = false;
    for (path, text) in &texts {
        let file = path.display().to_string();
        // A `---` stream: catalogs read strictly, or else Kubernetes manifests read as the API
        // machinery reads them (a repeated key keeps its last value, as Polyaxon's chart needs).
        let read = match plx_connections::read_documents(text) {
            Ok(documents) => Ok(documents),
            Err(error) => match plx_connections::read_manifests(text) {
                Ok(documents) if documents.len() > 1 && documents.iter().all(is_object) => {
                    Ok(documents)
                }
                Ok(documents) if documents.len() > 1 => Err(error),
                _ => Ok(Vec::new()),
            },
        };
        match read {
            Err(error) => reports.push((
                file,
                Report {
                    form: None,
                    diagnostics: vec![error],
                    content: None,
                },
            )),
            Ok(documents) if documents.len() > 1 => {
                stream = true;
                let checked = objects(&file, &documents, &catalogs);
                if checked.is_empty() {
                    // Said once, so that a stream with no catalog is not mistaken for a check.
                    let nothing = Report {
                        form: None,
                        diagnostics: Vec::new(),
                        content: None,
                    };
                    reports.push((file, nothing));
                }
                reports.extend(checked);
            }
            _ => reports.push((file, plx_connections::validate(text, &catalogs))),
        }
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
        Format::Text => write_text(
            &mut stdout,
            &reports,
            if stream { "document" } else { "file" },
        )?,
    }
    let failed = reports.iter().any(|(_, report)| report.has_errors());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--post-render`: Helm hands the rendered manifests on stdin and applies what comes back on
/// stdout, so a release with a broken catalog is refused whole, before any object changes.
/// Only objects are checked, and each carries its own catalog: `--catalog` has no use here.
fn post_render() -> anyhow::Result<ExitCode> {
    let text = read(&PathBuf::from("-"))?;
    let mut documents = plx_connections::read_manifests(&text).map_err(|error| {
        anyhow::anyhow!(
            "cannot read the rendered manifests on stdin: {}",
            error.message
        )
    })?;
    // Only Kubernetes objects: whatever else a renderer emits is Helm's to refuse, not ours.
    documents.retain(is_object);
    let reports = objects("helm", &documents, &[]);
    let mut findings = Vec::new();
    if reports.is_empty() {
        writeln!(
            findings,
            "plx-init: no ConfigMap or Secret in this release carries a connection catalog; nothing to check"
        )?;
    } else {
        write_text(&mut findings, &reports, "object")?;
    }
    let failed = reports.iter().any(|(_, report)| report.has_errors());
    std::io::stderr().write_all(&findings)?;
    if std::env::var_os("HELM_PLUGIN_NAME").is_some() {
        to_helm(&findings);
    }
    if failed {
        return Ok(ExitCode::from(1));
    }
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Helm 4 runs a post-renderer plugin with its stderr in a buffer it never shows (its error is
/// only `plugin "plx-validate" exited with error`; helm.sh/helm/v4 internal/plugin
/// runtime_subprocess.go), so the findings are also written where Helm writes: its own stderr,
/// reached through /proc, else the terminal. Best effort: stderr above has them in any case.
fn to_helm(findings: &[u8]) {
    use std::os::unix::fs::MetadataExt;
    let helm = format!("/proc/{}/fd/2", std::os::unix::process::parent_id());
    let same = |a: &str, b: &str| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same(&helm, "/proc/self/fd/2") {
        return;
    }
    for target in [helm.as_str(), "/dev/tty"] {
        if let Ok(mut out) = std::fs::OpenOptions::new().append(true).open(target)
            && out.write_all(findings).is_ok()
        {
            return;
        }
    }
}

/// A stream of documents (`helm template ... | plx-init validate -`): each Kubernetes object that
/// carries a catalog (a ConfigMap or Secret with the agent's or the pod's catalog keys) is checked
/// and named `FILE: Kind namespace/name`; objects that carry none are left out quietly. A document
/// that is not a Kubernetes object is checked as any single document is.
fn objects(file: &str, documents: &[Value], catalogs: &[Catalog]) -> Vec<(String, Report)> {
    let mut reports = Vec::new();
    for document in documents {
        let kind = document["kind"].as_str();
        if !is_object(document) {
            reports.push((
                file.to_owned(),
                plx_connections::validate_value(document, catalogs),
            ));
            continue;
        }
        let Some(report) =
            plx_connections::carried_catalog(kind.unwrap_or_default(), document, catalogs)
        else {
            continue;
        };
        let metadata = &document["metadata"];
        let name = match (metadata["namespace"].as_str(), metadata["name"].as_str()) {
            (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
            (None, Some(name)) => name.to_owned(),
            _ => "(no name)".to_owned(),
        };
        reports.push((
            format!("{file}: {} {name}", kind.unwrap_or_default()),
            report,
        ));
    }
    reports
}

/// A Kubernetes object: it says its `apiVersion` and `kind`.
fn is_object(document: &Value) -> bool {
    document["kind"].is_string() && document["apiVersion"].is_string()
}

fn write_text(
    out: &mut impl Write,
    reports: &[(String, Report)],
    noun: &str,
) -> anyhow::Result<()> {
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
        plural(reports.len(), noun)
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
