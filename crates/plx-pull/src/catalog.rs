//! Where connections and init sections come from: a catalog file in any form plx-connections
//! reads, or the pod's `POLYAXON_CONNECTIONS_CATALOG`; an `init:` section from a file.

use std::path::Path;

use plx_connections::{Catalog, Connection, Content, Init};
use plx_credentials::Environment;

use crate::Error;

/// The catalog in `file`, or without one the pod's `POLYAXON_CONNECTIONS_CATALOG` in `env`.
pub fn load(file: Option<&Path>, env: &Environment) -> Result<Catalog, Error> {
    let Some(file) = file else {
        let text = env.get(plx_connections::CONNECTIONS_CATALOG);
        return Ok(plx_connections::pod_catalog(text)?);
    };
    let text = read(file)?;
    let report = plx_connections::load(&text);
    match report.content {
        Some(Content::Catalog(catalog)) => Ok(catalog),
        Some(Content::Job(_)) => Err(Error::Invalid(format!(
            "{} is a job, not a connection catalog",
            file.display()
        ))),
        None => Err(Error::Invalid(format!(
            "{} is not a valid catalog (run `plx-init validate` on it):\n  {}",
            file.display(),
            errors(&report)
        ))),
    }
}

/// The connection `name` names, or without a name the artifacts store; `unnamed` says why a
/// name was expected where the catalog has no store.
pub fn connection<'a>(
    catalog: &'a Catalog,
    name: Option<&str>,
    unnamed: &'static str,
) -> Result<&'a Connection, Error> {
    match name {
        Some(name) => Ok(catalog.find(name)?),
        None => catalog
            .artifacts_store
            .as_ref()
            .ok_or(Error::NoConnection(unnamed)),
    }
}

/// The `init:` section in `file`: a bare list, or an operation or component that has one,
/// checked as Polyaxon's job rules check it (against `catalog`'s names).
pub fn read_init(file: &Path, catalog: &Catalog) -> Result<Vec<Init>, Error> {
    let text = read(file)?;
    let value = plx_connections::read_value(&text)
        .map_err(|diagnostic| Error::Invalid(format!("{}: {diagnostic}", file.display())))?;
    // A bare `init:` list is wrapped into a job so the validator's job rules apply to it.
    let job = if value.is_array() {
        serde_json::json!({"run": {"kind": "job", "init": value}})
    } else {
        value
    };
    let report = plx_connections::validate_value(&job, std::slice::from_ref(catalog));
    match report.content {
        Some(Content::Job(sections)) => Ok(sections
            .into_iter()
            .flat_map(|section| section.init)
            .collect()),
        _ => Err(Error::Invalid(format!(
            "{} is not a valid init section:\n  {}",
            file.display(),
            errors(&report)
        ))),
    }
}

fn read(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|cause| Error::file("read", file, cause))
}

/// The report's errors, one per line, for a message.
pub fn errors(report: &plx_connections::Report) -> String {
    report
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}
