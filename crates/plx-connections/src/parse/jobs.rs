//! Jobs: a run's (or replica's) `connections` and `init` entries, checked against the catalogs
//! given, and each init entry's fields (at most one source, paths that stay relative).

use serde_json::{Map, Value};

use super::{connections::GIT_FIELDS, value::*};
use crate::{
    diag::{Code, Ptr, Sink},
    kind::Kind,
    model::*,
    rules,
};

pub(super) const ARTIFACTS_FIELDS: &[&str] = &["files", "dirs", "workers"];

pub(super) const INIT_FILE_FIELDS: &[&str] = &["content", "filename", "chmod", "kind"];

/// Names the catalogs define, for reference checks. None: no catalog given, references unchecked.
pub(crate) struct Known<'a> {
    pub(crate) catalogs: &'a [Catalog],
}

impl Known<'_> {
    fn get(&self, name: &str) -> Option<&Connection> {
        self.catalogs.iter().find_map(|catalog| catalog.get(name))
    }

    pub(crate) fn check(&self, sink: &mut Sink, name: &str, path: &Ptr) -> bool {
        if self.catalogs.is_empty() || self.get(name).is_some() {
            return true;
        }
        let names: Vec<&str> = self
            .catalogs
            .iter()
            .flat_map(|catalog| catalog.all())
            .map(|c| c.name.as_str())
            .collect();
        let hint = did_you_mean(name, &names)
            .map(|near| format!("did you mean `{near}`? "))
            .unwrap_or_default();
        sink.error(
            path,
            Code::UnknownConnection,
            format!(
                "no connection named `{name}` in the catalog; {hint}known: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        );
        false
    }
}

pub(crate) fn job_section(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    known: &Known<'_>,
) -> Option<JobSection> {
    let errors_before = error_count(sink);
    let mut section = JobSection {
        path: path.0.clone(),
        ..JobSection::default()
    };
    if let Some(names) = string_list(sink, map, path, "connections") {
        for (index, name) in names.iter().enumerate() {
            known.check(sink, name, &path.key("connections").index(index));
        }
        section.connections = names;
    }
    match get(map, "init") {
        Some(Value::Array(entries)) => {
            for (index, entry) in entries.iter().enumerate() {
                if let Some(init) = init(sink, entry, &path.key("init").index(index), known) {
                    section.init.push(init);
                }
            }
        }
        Some(other) => sink.error(
            &path.key("init"),
            Code::InvalidType,
            format!("init must be a list of entries, not {}", type_name(other)),
        ),
        None => {}
    }
    (error_count(sink) == errors_before).then_some(section)
}

pub(crate) fn init(sink: &mut Sink, value: &Value, path: &Ptr, known: &Known<'_>) -> Option<Init> {
    let errors_before = error_count(sink);
    let map = object(sink, value, path, "an init entry", INIT_FIELDS)?;
    exclusive(sink, map, path);
    let connection = string(sink, map, path, "connection", Need::Optional);
    let target = connection.as_ref().and_then(|name| {
        known
            .check(sink, name, &path.key("connection"))
            .then(|| known.get(name))
            .flatten()
    });
    let artifacts =
        get(map, "artifacts").and_then(|value| artifacts(sink, value, &path.key("artifacts")));
    let paths = entries(sink, map, path, "paths");
    if (artifacts.is_some() || paths.is_some())
        && let (Some(name), Some(target)) = (&connection, target)
        && !target.kind.is_artifact()
    {
        sink.error(
                    &path.key("connection"),
                    Code::InitConnectionKind,
                    format!("`{name}` is a connection of kind {}, which holds no artifacts; pull artifacts from an s3, gcs, wasb, host_path or volume_claim connection", target.kind),
                );
    }
    let git =
        get(map, "git").and_then(|value| git(sink, value, path, connection.as_deref(), target));
    let file = get(map, "file").and_then(|value| file(sink, value, &path.key("file")));
    let dockerfile = free_object(sink, map, path, "dockerfile");
    let tensorboard = free_object(sink, map, path, "tensorboard");
    let container = free_object(sink, map, path, "container");
    let lineage_ref = string(sink, map, path, "lineageRef", Need::Optional);
    let model_ref = string(sink, map, path, "modelRef", Need::Optional);
    let artifact_ref = string(sink, map, path, "artifactRef", Need::Optional);
    let destination = string(sink, map, path, "path", Need::Optional);
    if let Some(destination) = &destination {
        check_destination(sink, destination, &path.key("path"));
    }
    if error_count(sink) != errors_before {
        return None;
    }
    Some(Init {
        artifacts,
        paths,
        git,
        file,
        dockerfile,
        tensorboard,
        lineage_ref,
        model_ref,
        artifact_ref,
        connection,
        path: destination,
        container,
    })
}

/// At most one of the fields that say what an init entry does.
fn exclusive(sink: &mut Sink, map: &Map<String, Value>, path: &Ptr) {
    let set: Vec<&str> = INIT_EXCLUSIVE
        .iter()
        .copied()
        .filter(|field| get(map, field).is_some())
        .collect();
    if set.len() > 1 {
        let list = set
            .iter()
            .map(|field| format!("`{field}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        sink.error(
            path,
            Code::InitExclusiveFields,
            format!(
                "{list} are {} set; an init entry does one thing, so split it into one entry each",
                if set.len() == 2 { "both" } else { "all" }
            ),
        );
    }
}

/// `artifacts: {files, dirs, workers}`.
fn artifacts(sink: &mut Sink, value: &Value, artifacts_path: &Ptr) -> Option<Artifacts> {
    let fields = object(sink, value, artifacts_path, "`artifacts`", ARTIFACTS_FIELDS)?;
    let files = entries(sink, fields, artifacts_path, "files");
    let dirs = entries(sink, fields, artifacts_path, "dirs");
    let workers = match get(fields, "workers") {
        None => None,
        Some(Value::Number(number)) => match number.as_u64() {
            Some(workers @ 1..=1024) => Some(workers as u32),
            _ => {
                sink.error(
                    &artifacts_path.key("workers"),
                    Code::OutOfRange,
                    format!("workers is {number}; give a whole number from 1 to 1024"),
                );
                None
            }
        },
        Some(other) => {
            sink.error(
                &artifacts_path.key("workers"),
                Code::InvalidType,
                format!("workers must be a number, not {}", type_name(other)),
            );
            None
        }
    };
    Some(Artifacts {
        files,
        dirs,
        workers,
    })
}

/// `git: {url, revision, flags}`, cloning `git.url` or the entry's git (or ssh) connection.
fn git(
    sink: &mut Sink,
    value: &Value,
    path: &Ptr,
    connection: Option<&str>,
    target: Option<&Connection>,
) -> Option<InitGit> {
    let git_path = path.key("git");
    let fields = object(sink, value, &git_path, "`git`", GIT_FIELDS)?;
    let url = string(sink, fields, &git_path, "url", Need::Optional);
    if url.is_none() && connection.is_none() {
        sink.error(
            &git_path.key("url"),
            Code::MissingField,
            "a git init entry needs `git.url` or a `connection` of kind git",
        );
    }
    if let (Some(name), Some(target)) = (connection, target)
        && !matches!(target.kind, Kind::Git | Kind::Ssh)
    {
        sink.error(&path.key("connection"), Code::InitConnectionKind, format!("`{name}` is a connection of kind {}; a git init entry needs a git (or ssh) connection", target.kind));
    }
    let revision = string(sink, fields, &git_path, "revision", Need::Optional);
    let flags = string_list(sink, fields, &git_path, "flags");
    Some(InitGit {
        url,
        revision,
        flags,
    })
}

/// `file: {content, filename, chmod, kind}`: a file written into the run.
fn file(sink: &mut Sink, value: &Value, file_path: &Ptr) -> Option<InitFile> {
    let fields = object(sink, value, file_path, "`file`", INIT_FILE_FIELDS)?;
    let content = string(
        sink,
        fields,
        file_path,
        "content",
        Need::Required("the file's content"),
    );
    let filename = string(sink, fields, file_path, "filename", Need::Optional);
    if let Some(filename) = &filename {
        check_relative(sink, filename, &file_path.key("filename"));
    }
    let chmod = string(sink, fields, file_path, "chmod", Need::Optional);
    let kind = string(sink, fields, file_path, "kind", Need::Optional);
    Some(InitFile {
        content: content?,
        filename,
        chmod,
        kind,
    })
}

/// An init entry's `path`: an absolute mount path that stays where it is put.
fn check_destination(sink: &mut Sink, destination: &str, destination_path: &Ptr) {
    if let Some(reason) = rules::escape_reason(destination) {
        sink.error(
            destination_path,
            Code::PathEscape,
            format!("`{destination}` {reason}; give an absolute path without `..`, e.g. `/data`"),
        );
    } else if !destination.starts_with('/') {
        sink.error(destination_path, Code::InvalidMountPath, format!("`{destination}` is relative; the destination is a mount path, write it absolute, e.g. `/{destination}`"));
    }
}

pub(super) fn entries(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
) -> Option<Vec<PathEntry>> {
    let value = get(map, key)?;
    let path = path.key(key);
    let Value::Array(items) = value else {
        sink.error(
            &path,
            Code::InvalidType,
            format!(
                "{key} must be a list of paths or [from, to] pairs, not {}",
                type_name(value)
            ),
        );
        return None;
    };
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = path.index(index);
        match item {
            Value::String(text) => {
                if check_relative(sink, text, &item_path) {
                    out.push(PathEntry::Same(text.clone()));
                }
            }
            Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                (Value::String(from), Value::String(to)) => {
                    let from_ok = check_relative(sink, from, &item_path.index(0));
                    let to_ok = check_relative(sink, to, &item_path.index(1));
                    if from_ok && to_ok {
                        out.push(PathEntry::Renamed(from.clone(), to.clone()));
                    }
                }
                _ => sink.error(
                    &item_path,
                    Code::InvalidType,
                    "a [from, to] pair holds two strings",
                ),
            },
            Value::Array(pair) => sink.error(
                &item_path,
                Code::InvalidType,
                format!("a [from, to] pair has 2 items, not {}", pair.len()),
            ),
            other => sink.error(
                &item_path,
                Code::InvalidType,
                format!(
                    "an entry is a path or a [from, to] pair, not {}",
                    type_name(other)
                ),
            ),
        }
    }
    Some(out)
}

/// Refuses entries that would leave the store or the destination root.
pub(super) fn check_relative(sink: &mut Sink, text: &str, path: &Ptr) -> bool {
    if text.starts_with('/') {
        sink.error(
            path,
            Code::PathEscape,
            format!("`{text}` is absolute; entries are relative to the connection's store and the destination, write `{}`", text.trim_start_matches('/')),
        );
        return false;
    }
    if let Some(reason) = rules::escape_reason(text) {
        sink.error(path, Code::PathEscape, format!("`{}` {reason}, which could reach outside the store or the destination; write a path inside it", text.escape_debug()));
        return false;
    }
    true
}
