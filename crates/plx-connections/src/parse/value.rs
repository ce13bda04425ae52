//! Value access: small typed readers over a JSON mapping that report into the sink, the
//! unknown-field check with its did-you-mean, and the type names messages use. Null counts as
//! absent, as it does for Polyaxon's optional fields.

use serde_json::{Map, Value};

use crate::diag::{Code, Ptr, Sink};

pub(crate) enum Need<'a> {
    Required(&'a str),
    Optional,
}

pub(crate) fn get<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|value| !value.is_null())
}

pub(crate) fn object<'v>(
    sink: &mut Sink,
    value: &'v Value,
    path: &Ptr,
    what: &str,
    fields: &[&str],
) -> Option<&'v Map<String, Value>> {
    let Value::Object(map) = value else {
        sink.error(
            path,
            Code::InvalidType,
            format!("{what} must be a mapping, not {}", type_name(value)),
        );
        return None;
    };
    for key in map.keys() {
        if !fields.contains(&key.as_str()) {
            unknown_field(sink, &path.key(key), key, fields, what);
        }
    }
    Some(map)
}

pub(super) fn unknown_field(sink: &mut Sink, path: &Ptr, key: &str, fields: &[&str], what: &str) {
    let hint = match did_you_mean(key, fields) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    let known = fields
        .iter()
        .map(|field| format!("`{field}`"))
        .collect::<Vec<_>>()
        .join(", ");
    sink.error(
        path,
        Code::UnknownField,
        format!("{what} has no field `{key}`; {hint}known fields: {known}"),
    );
}

pub(super) fn string(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
    need: Need<'_>,
) -> Option<String> {
    match (get(map, key), need) {
        (Some(Value::String(text)), _) => Some(text.clone()),
        (Some(other), _) => {
            let quote = if matches!(other, Value::Number(_) | Value::Bool(_)) {
                "; quote it"
            } else {
                ""
            };
            sink.error(
                &path.key(key),
                Code::InvalidType,
                format!("{key} must be a string, not {}{quote}", type_name(other)),
            );
            None
        }
        (None, Need::Required(what)) => {
            sink.error(
                &path.key(key),
                Code::MissingField,
                format!("`{key}` is required: {what}"),
            );
            None
        }
        (None, Need::Optional) => None,
    }
}

pub(super) fn absolute_path(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
    need: Need<'_>,
) -> Option<String> {
    let text = string(sink, map, path, key, need)?;
    if !text.starts_with('/') {
        sink.error(
            &path.key(key),
            Code::InvalidMountPath,
            format!(
                "`{text}` is not an absolute path; write `/{}`",
                text.trim_start_matches("./")
            ),
        );
    }
    Some(text)
}

pub(super) fn boolean(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
) -> Option<bool> {
    match get(map, key)? {
        Value::Bool(flag) => Some(*flag),
        other => {
            sink.error(
                &path.key(key),
                Code::InvalidType,
                format!(
                    "{key} must be true or false (unquoted), not {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

pub(crate) fn string_list(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
) -> Option<Vec<String>> {
    let value = get(map, key)?;
    let path = path.key(key);
    let Value::Array(items) = value else {
        sink.error(
            &path,
            Code::InvalidType,
            format!("{key} must be a list of strings, not {}", type_name(value)),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => out.push(text.clone()),
            other => sink.error(
                &path.index(index),
                Code::InvalidType,
                format!("{key} holds strings, not {}", type_name(other)),
            ),
        }
    }
    Some(out)
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn error_count(sink: &Sink) -> usize {
    sink.diagnostics.iter().filter(|d| d.is_error()).count()
}

/// The closest of `known` to `text`, if one is close enough to be a typo.
pub(crate) fn did_you_mean<'k>(text: &str, known: &[&'k str]) -> Option<&'k str> {
    let fold = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let folded = fold(text);
    if let Some(same) = known.iter().find(|candidate| fold(candidate) == folded) {
        return Some(same);
    }
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(&folded, &fold(candidate)), *candidate))
        .filter(|(distance, candidate)| *distance <= 2 && *distance < candidate.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

pub(super) fn free_object(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
    key: &str,
) -> Option<Map<String, Value>> {
    match get(map, key)? {
        Value::Object(fields) => Some(fields.clone()),
        other => {
            sink.error(
                &path.key(key),
                Code::InvalidType,
                format!("{key} must be a mapping, not {}", type_name(other)),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_catches_case_and_typos() {
        assert_eq!(
            did_you_mean("mount_path", &["mountPath", "items"]),
            Some("mountPath")
        );
        assert_eq!(
            did_you_mean("secrte", &["secret", "schema"]),
            Some("secret")
        );
        assert_eq!(did_you_mean("s4", &["s3", "gcs"]), Some("s3"));
        assert_eq!(did_you_mean("zzzzzz", &["secret"]), None);
    }
}
