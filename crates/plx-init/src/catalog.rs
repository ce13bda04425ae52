//! Where the commands find connections: `--catalog FILE` (any form plx-connections reads) or the
//! pod's `POLYAXON_CONNECTIONS_CATALOG`.

use std::path::Path;

use anyhow::Context;
use plx_connections::{Catalog, Content};
use plx_credentials::Environment;

pub(crate) fn load(file: Option<&Path>, env: &Environment) -> anyhow::Result<Catalog> {
    let Some(file) = file else {
        let text = env.get(plx_connections::CONNECTIONS_CATALOG);
        return plx_connections::pod_catalog(text).map_err(anyhow::Error::from);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report = plx_connections::load(&text);
    match report.content {
        Some(Content::Catalog(catalog)) => Ok(catalog),
        Some(Content::Job(_)) => {
            anyhow::bail!("{} is a job, not a connection catalog", file.display())
        }
        None => anyhow::bail!(
            "{} is not a valid catalog (run `plx-init validate` on it):\n  {}",
            file.display(),
            errors(&report)
        ),
    }
}

/// The report's errors, one per line, for a message.
/// The connection `name` names, or the artifacts store when there is no name; `unnamed` says
/// why a name was expected when the catalog has no store.
pub(crate) fn connection<'a>(
    catalog: &'a Catalog,
    name: Option<&str>,
    unnamed: &'static str,
) -> anyhow::Result<&'a plx_connections::Connection> {
    match name {
        Some(name) => Ok(catalog.find(name)?),
        None => catalog.artifacts_store.as_ref().context(unnamed),
    }
}

pub(crate) fn errors(report: &plx_connections::Report) -> String {
    report
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}
