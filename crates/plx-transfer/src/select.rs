//! Selection: which keys a request names and where each lands. Keys joined to the store's
//! prefix, include and exclude globs, a listed object's stamp, and the planning units (named
//! keys of one directory looked up together).

use std::{collections::BTreeMap, path::PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Download, Entry, ErrorKind, ObjectError, path::local_path};

/// Named keys of one directory looked up with one listing of it rather than one each, from this
/// many; each page of that listing may cost at most this many single lookups.
pub(crate) const SIBLINGS: usize = 4;

pub(crate) fn join_key(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{rest}"),
    }
}

/// Include or exclude patterns as one set; none when there are no patterns.
pub(crate) fn globs(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(|error| format!("glob `{pattern}`: {error}"))?);
    }
    builder.build().map(Some).map_err(|error| error.to_string())
}

/// What one planner looks up: an entry, or the named keys of one directory together.
pub(crate) enum Unit {
    One(usize),
    Siblings(Vec<usize>),
}

/// The request's entries as planning units: named keys grouped by their directory where it
/// names at least [`SIBLINGS`] of them.
pub(crate) fn units(request: &Download) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut directories: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (at, entry) in request.entries.iter().enumerate() {
        let Entry::File { from, .. } = entry else {
            units.push(Unit::One(at));
            continue;
        };
        let key = join_key(&request.prefix, from);
        // A key ending in `/` lists as a common prefix of its directory, not as an object.
        if key.is_empty() || key.ends_with('/') {
            units.push(Unit::One(at));
            continue;
        }
        directories
            .entry(parent(&key).to_owned())
            .or_default()
            .push(at);
    }
    for (_, group) in directories {
        if group.len() >= SIBLINGS {
            units.push(Unit::Siblings(group));
        } else {
            units.extend(group.into_iter().map(Unit::One));
        }
    }
    units
}

/// The directory a key is in, with its trailing `/` (empty at the top).
pub(crate) fn parent(key: &str) -> &str {
    key.rfind('/').map_or("", |end| &key[..=end])
}

/// Where a named key lands, or why it may not.
pub(crate) fn named_path(key: &str, to: &str) -> Result<PathBuf, ObjectError> {
    local_path(to).map_err(|error| {
        ObjectError::new(
            ErrorKind::HostileKey,
            key,
            format!("destination `{to}` {error}"),
        )
    })
}
