//! A connection's `env`, in the three forms plx-init reads: a map, `[name, value]` pairs and
//! `{name, value}` objects (which of them Polyaxon's own readers take is `readers`' concern).

use std::collections::HashMap;

use serde_json::Value;

use super::value::*;
use crate::{
    diag::{Code, Ptr, Sink},
    model::*,
    rules,
};

/// The forms `env` may take, for messages.
const FORMS: &str = "write `env` as a map (`NAME: value`), a list of `[NAME, value]` pairs, or a list of `{name: NAME, value: value}`";

pub(super) fn env(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<Env> {
    let errors_before = error_count(sink);
    let mut vars: Vec<(EnvVar, Ptr)> = Vec::new();
    match value {
        Value::Object(map) => {
            for (name, value) in map {
                let var_path = path.key(name);
                if let Some(value) = env_value(sink, value, &var_path) {
                    vars.push((
                        EnvVar {
                            name: name.clone(),
                            value,
                        },
                        var_path,
                    ));
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                list_item(sink, item, &path.index(index), &mut vars);
            }
        }
        other => {
            sink.error(
                path,
                Code::InvalidType,
                format!("env cannot be {}; {FORMS}", type_name(other)),
            );
            return None;
        }
    }
    check_names(sink, &vars);
    if error_count(sink) != errors_before {
        return None;
    }
    // The last value of a repeated name wins, as in Polyaxon and Kubernetes; it keeps the first place.
    let mut out: Vec<EnvVar> = Vec::with_capacity(vars.len());
    for (var, _) in vars {
        match out.iter_mut().find(|seen| seen.name == var.name) {
            Some(seen) => seen.value = var.value,
            None => out.push(var),
        }
    }
    Some(Env(out))
}

/// One item of a list-form `env`: a `[NAME, value]` pair or a `{name, value}` object.
fn list_item(sink: &mut Sink, item: &Value, item_path: &Ptr, vars: &mut Vec<(EnvVar, Ptr)>) {
    match item {
        Value::Array(pair) if pair.len() == 2 => match &pair[0] {
            Value::String(name) => {
                if let Some(value) = env_value(sink, &pair[1], &item_path.index(1)) {
                    vars.push((
                        EnvVar {
                            name: name.clone(),
                            value,
                        },
                        item_path.index(0),
                    ));
                }
            }
            other => sink.error(
                &item_path.index(0),
                Code::InvalidType,
                format!("a variable name must be a string, not {}", type_name(other)),
            ),
        },
        Value::Array(pair) => sink.error(
            item_path,
            Code::InvalidType,
            format!("a pair has 2 items, [NAME, value], not {}", pair.len()),
        ),
        Value::Object(_) => {
            let Some(fields) = object(sink, item, item_path, "an env variable", &["name", "value"])
            else {
                return;
            };
            let name = string(
                sink,
                fields,
                item_path,
                "name",
                Need::Required("the variable's name"),
            );
            let value = match get(fields, "value") {
                Some(value) => env_value(sink, value, &item_path.key("value")),
                None => {
                    sink.error(&item_path.key("value"), Code::MissingField, "give the variable a `value` (connections cannot use valueFrom; put secrets in `secret`)");
                    None
                }
            };
            if let (Some(name), Some(value)) = (name, value) {
                vars.push((EnvVar { name, value }, item_path.key("name")));
            }
        }
        other => sink.error(
            item_path,
            Code::InvalidType,
            format!("an env entry cannot be {}; {FORMS}", type_name(other)),
        ),
    }
}

/// Names that are valid variables, said once each, and none that holds a credential.
fn check_names(sink: &mut Sink, vars: &[(EnvVar, Ptr)]) {
    let mut seen: HashMap<String, Ptr> = HashMap::new();
    for (var, var_path) in vars {
        if !rules::is_env_name(&var.name) {
            sink.error(var_path, Code::InvalidEnvName, format!("`{}` is not a valid variable name: use letters, digits, `_`, `-` and `.`, not starting with a digit", var.name));
        }
        if let Some(first) = seen.insert(var.name.clone(), var_path.clone()) {
            sink.warning(
                var_path,
                Code::DuplicateEnv,
                format!(
                    "`{}` is already set at {}; the last value wins, remove one",
                    var.name, first.0
                ),
            );
        }
        let upper = var.name.to_ascii_uppercase();
        if [
            "SECRET_ACCESS_KEY",
            "SESSION_TOKEN",
            "SECURITY_TOKEN",
            "PASSWORD",
            "ACCOUNT_KEY",
        ]
        .iter()
        .any(|suffix| upper.ends_with(suffix))
        {
            sink.warning(var_path, Code::SecretInEnv, format!("`{}` is a credential written in plain text; put it in a Secret and name it in `secret`", var.name));
        }
    }
}

pub(super) fn env_value(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        other => {
            sink.error(
                path,
                Code::InvalidType,
                format!(
                    "a variable's value must be a string, number or boolean, not {}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod env_tests {
    use crate::Content;

    #[test]
    fn repeated_env_name_keeps_the_last_value_in_the_first_place() {
        let report = crate::validate(
            "- {name: a, kind: postgres, env: [[X, '1'], [Y, '2'], [X, '3']]}",
            &[],
        );
        let Some(Content::Catalog(catalog)) = report.content else {
            panic!("{:?}", report.diagnostics)
        };
        let env: Vec<(&str, &str)> = catalog.connections[0]
            .env_vars()
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_str()))
            .collect();
        assert_eq!(env, [("X", "3"), ("Y", "2")]);
    }
}
