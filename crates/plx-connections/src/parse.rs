//! One pass over a JSON value that builds the typed model and reports every problem on the way.
//!
//! Parsing never stops at the first problem: each field is checked on its own, and a value is
//! built only where its part of the document had no error.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::{
    diag::{Code, Ptr, Sink},
    kind::{Kind, SchemaShape},
    model::*,
    rules,
};

const CONNECTION_FIELDS: &[&str] = &[
    "name",
    "kind",
    "description",
    "tags",
    "schema",
    "secret",
    "configMap",
    "env",
    "annotations",
    "isAlias",
];
const RESOURCE_FIELDS: &[&str] = &[
    "name",
    "mountPath",
    "items",
    "defaultMode",
    "hostPath",
    "isRequested",
];
const BUCKET_FIELDS: &[&str] = &["bucket"];
const CLAIM_FIELDS: &[&str] = &["volumeClaim", "mountPath", "readOnly"];
const HOST_PATH_FIELDS: &[&str] = &["hostPath", "mountPath", "readOnly"];
const GIT_FIELDS: &[&str] = &["url", "revision", "flags"];
const REGISTRY_FIELDS: &[&str] = &["url", "insecure"];
const INIT_FIELDS: &[&str] = &[
    "artifacts",
    "paths",
    "git",
    "file",
    "dockerfile",
    "tensorboard",
    "lineageRef",
    "modelRef",
    "artifactRef",
    "connection",
    "path",
    "container",
];
const ARTIFACTS_FIELDS: &[&str] = &["files", "dirs", "workers"];
const INIT_FILE_FIELDS: &[&str] = &["content", "filename", "chmod", "kind"];

/// Longest connection name whose Polyaxon init container name (`polyaxon-init-artifacts-<name>-<10 hex>`)
/// still fits in 63 characters.
const INIT_NAME_MAX: usize = 63 - "polyaxon-init-artifacts-".len() - "-0123456789".len();

/// A connection as far as it could be read: the name and kind are kept for the cross-field rules
/// even when other fields are wrong.
pub(crate) struct Parsed {
    pub(crate) name: Option<String>,
    pub(crate) name_path: Ptr,
    pub(crate) kind: Option<Kind>,
    pub(crate) kind_path: Ptr,
    pub(crate) connection: Option<Connection>,
    pub(crate) secret_mounts: Vec<(String, Option<String>, Ptr, &'static str)>,
}

pub(crate) fn connection(sink: &mut Sink, value: &Value, path: &Ptr) -> Parsed {
    let errors_before = sink.diagnostics.iter().filter(|d| d.is_error()).count();
    let mut parsed = Parsed {
        name: None,
        name_path: path.key("name"),
        kind: None,
        kind_path: path.key("kind"),
        connection: None,
        secret_mounts: Vec::new(),
    };
    let Some(map) = object(sink, value, path, "a connection", CONNECTION_FIELDS) else {
        return parsed;
    };

    let name = string(
        sink,
        map,
        path,
        "name",
        Need::Required("a connection name, e.g. `name: s3-dataset1`"),
    );
    if let Some(name) = &name
        && !rules::is_dns_label(name)
    {
        let hint = rules::suggest_label(name);
        let hint = if hint.is_empty() {
            "s3-dataset1".to_owned()
        } else {
            hint
        };
        sink.error(
                &parsed.name_path,
                Code::InvalidName,
                format!(
                    "`{name}` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit): it becomes volume and container names; write `{hint}`"
                ),
            );
    }
    parsed.name = name.clone();

    let kind = match get(map, "kind") {
        None => {
            sink.error(
                &parsed.kind_path,
                Code::MissingField,
                format!("a connection needs a kind: one of {}", kinds_list()),
            );
            None
        }
        Some(Value::String(text)) => match text.parse::<Kind>() {
            Ok(kind) => Some(kind),
            Err(_) => {
                let names: Vec<&str> = Kind::ALL.iter().map(|kind| kind.as_str()).collect();
                let hint = did_you_mean(text, &names)
                    .map(|near| format!("did you mean `{near}`? "))
                    .unwrap_or_default();
                sink.error(
                    &parsed.kind_path,
                    Code::UnknownKind,
                    format!("unknown kind `{text}`; {hint}valid kinds: {}", kinds_list()),
                );
                None
            }
        },
        Some(other) => {
            sink.error(
                &parsed.kind_path,
                Code::InvalidType,
                format!(
                    "kind must be a string, not {}; one of {}",
                    type_name(other),
                    kinds_list()
                ),
            );
            None
        }
    };
    parsed.kind = kind;

    if let (Some(name), Some(kind)) = (&name, kind)
        && kind.is_artifact()
        && rules::is_dns_label(name)
        && name.len() > INIT_NAME_MAX
    {
        sink.warning(
                &parsed.name_path,
                Code::NameTooLongForInit,
                format!(
                    "Polyaxon names this connection's init containers `polyaxon-init-artifacts-{name}-<10 hex>`, longer than the 63 characters Kubernetes allows; keep the name to {INIT_NAME_MAX} characters"
                ),
            );
    }

    let description = string(sink, map, path, "description", Need::Optional);
    let tags = string_list(sink, map, path, "tags");
    let is_alias = boolean(sink, map, path, "isAlias");
    let annotations = annotations(sink, map, path);
    let schema = match kind {
        Some(kind) => connection_schema(sink, kind, get(map, "schema"), &path.key("schema")),
        None => None,
    };
    let secret =
        get(map, "secret").and_then(|value| resource(sink, value, &path.key("secret"), "secret"));
    let config_map = get(map, "configMap")
        .and_then(|value| resource(sink, value, &path.key("configMap"), "configMap"));
    for (resource, key, label) in [
        (&secret, "secret", "Secret"),
        (&config_map, "configMap", "ConfigMap"),
    ] {
        if let Some(resource) = resource {
            parsed.secret_mounts.push((
                resource.name.clone(),
                resource.mount_path.clone(),
                path.key(key),
                label,
            ));
        }
    }
    let env = get(map, "env").and_then(|value| env(sink, value, &path.key("env")));

    if let Some(kind) = kind {
        let written = |key: &str| {
            get(map, key).is_some_and(|value| {
                value.as_array().is_none_or(|items| !items.is_empty())
                    && value.as_object().is_none_or(|fields| !fields.is_empty())
            })
        };
        if kind.is_bucket() && !written("secret") && !written("configMap") && !written("env") {
            sink.warning(
                path,
                Code::AmbientCredentials,
                format!(
                    "this connection of kind {kind} has no secret, configMap or env, so it uses the ambient credential chain (workload identity, instance profile); add `secret: {{name: <secret>}}` if that is not meant"
                ),
            );
        }
    }

    let errors_after = sink.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors_after == errors_before
        && let (Some(name), Some(kind)) = (name, kind)
    {
        parsed.connection = Some(Connection {
            name,
            kind,
            description,
            tags,
            schema,
            secret,
            config_map,
            env,
            annotations,
            is_alias,
        });
    }
    parsed
}

fn kinds_list() -> String {
    Kind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn connection_schema(
    sink: &mut Sink,
    kind: Kind,
    value: Option<&Value>,
    path: &Ptr,
) -> Option<ConnectionSchema> {
    let shape = kind.schema_shape();
    let Some(value) = value else {
        let example = match shape {
            SchemaShape::Bucket => format!(
                "schema: {{bucket: \"{}my-bucket/prefix\"}}",
                kind.bucket_schemes()[0]
            ),
            SchemaShape::Claim => "schema: {volumeClaim: my-claim, mountPath: /data}".to_owned(),
            SchemaShape::HostPath => "schema: {hostPath: /mnt/data, mountPath: /data}".to_owned(),
            SchemaShape::Registry => "schema: {url: registry.example.com/team}".to_owned(),
            SchemaShape::Git | SchemaShape::Free => return None,
        };
        sink.error(
            path,
            Code::MissingField,
            format!("a {kind} connection needs a schema: {example}"),
        );
        return None;
    };
    let Value::Object(map) = value else {
        sink.error(
            path,
            Code::InvalidType,
            format!("schema must be a mapping, not {}", type_name(value)),
        );
        return None;
    };
    if shape == SchemaShape::Free {
        return Some(ConnectionSchema::Other(map.clone()));
    }
    // A schema written for another kind, e.g. `bucket` on a volume_claim: one clear error, not a
    // list of unknown and missing fields.
    let identified = [
        ("bucket", SchemaShape::Bucket, "s3, gcs or wasb"),
        ("volumeClaim", SchemaShape::Claim, "volume_claim"),
        ("hostPath", SchemaShape::HostPath, "host_path"),
    ]
    .into_iter()
    .find(|(key, other, _)| *other != shape && map.contains_key(*key));
    let own_key = match shape {
        SchemaShape::Bucket => Some("bucket"),
        SchemaShape::Claim => Some("volumeClaim"),
        SchemaShape::HostPath => Some("hostPath"),
        _ => None,
    };
    if let Some((key, _, other_kinds)) = identified
        && own_key.is_none_or(|own| !map.contains_key(own))
    {
        sink.error(
                path,
                Code::SchemaKindMismatch,
                format!("this schema has `{key}`, so it is written for {other_kinds}, but kind is {kind}; change the kind or write {}", shape_fields(shape)),
            );
        return None;
    }
    let fields = shape_field_list(shape);
    for key in map.keys() {
        if fields.contains(&key.as_str()) {
            continue;
        }
        let key_path = path.key(key);
        let owner = [
            SchemaShape::Bucket,
            SchemaShape::Claim,
            SchemaShape::HostPath,
            SchemaShape::Git,
            SchemaShape::Registry,
        ]
        .into_iter()
        .find(|other| shape_field_list(*other).contains(&key.as_str()));
        match owner {
            Some(other) => sink.error(
                &key_path,
                Code::SchemaKindMismatch,
                format!(
                    "`{key}` belongs to {} schemas; a {kind} schema has {}",
                    shape_kinds(other),
                    shape_fields(shape)
                ),
            ),
            None => unknown_field(sink, &key_path, key, fields, &format!("a {kind} schema")),
        }
    }
    match shape {
        SchemaShape::Bucket => {
            let bucket = string(
                sink,
                map,
                path,
                "bucket",
                Need::Required(&format!(
                    "the bucket URL, e.g. `{}my-bucket/prefix`",
                    kind.bucket_schemes()[0]
                )),
            )?;
            check_bucket(sink, kind, &bucket, &path.key("bucket"));
            Some(ConnectionSchema::Bucket(BucketSchema { bucket }))
        }
        SchemaShape::Claim => {
            let volume_claim = string(
                sink,
                map,
                path,
                "volumeClaim",
                Need::Required("the PersistentVolumeClaim's name"),
            );
            if let Some(claim) = &volume_claim
                && !rules::is_dns_subdomain(claim)
            {
                sink.error(&path.key("volumeClaim"), Code::InvalidName, format!("`{claim}` is not a valid PersistentVolumeClaim name (a DNS-1123 subdomain: lowercase letters, digits, `-` and `.`)"));
            }
            let mount_path = absolute_path(
                sink,
                map,
                path,
                "mountPath",
                Need::Required("where to mount the claim, e.g. `/data`"),
            );
            let read_only = boolean(sink, map, path, "readOnly");
            Some(ConnectionSchema::Claim(ClaimSchema {
                volume_claim: volume_claim?,
                mount_path: mount_path?,
                read_only,
            }))
        }
        SchemaShape::HostPath => {
            let host_path = absolute_path(
                sink,
                map,
                path,
                "hostPath",
                Need::Required("the path on the node, e.g. `/mnt/data`"),
            );
            let mount_path = absolute_path(
                sink,
                map,
                path,
                "mountPath",
                Need::Required("where to mount it, e.g. `/data`"),
            );
            let read_only = boolean(sink, map, path, "readOnly");
            Some(ConnectionSchema::HostPath(HostPathSchema {
                host_path: host_path?,
                mount_path: mount_path?,
                read_only,
            }))
        }
        SchemaShape::Git => {
            let url = string(sink, map, path, "url", Need::Optional);
            let revision = string(sink, map, path, "revision", Need::Optional);
            let flags = string_list(sink, map, path, "flags");
            Some(ConnectionSchema::Git(GitSchema {
                url,
                revision,
                flags,
            }))
        }
        SchemaShape::Registry => {
            let url = string(
                sink,
                map,
                path,
                "url",
                Need::Required("the registry, e.g. `registry.example.com/team`"),
            );
            let insecure = boolean(sink, map, path, "insecure");
            Some(ConnectionSchema::Registry(RegistrySchema {
                url: url?,
                insecure,
            }))
        }
        SchemaShape::Free => None,
    }
}

fn shape_field_list(shape: SchemaShape) -> &'static [&'static str] {
    match shape {
        SchemaShape::Bucket => BUCKET_FIELDS,
        SchemaShape::Claim => CLAIM_FIELDS,
        SchemaShape::HostPath => HOST_PATH_FIELDS,
        SchemaShape::Git => GIT_FIELDS,
        SchemaShape::Registry => REGISTRY_FIELDS,
        SchemaShape::Free => &[],
    }
}

fn shape_fields(shape: SchemaShape) -> String {
    let fields: Vec<String> = shape_field_list(shape)
        .iter()
        .map(|field| format!("`{field}`"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn shape_kinds(shape: SchemaShape) -> &'static str {
    match shape {
        SchemaShape::Bucket => "s3, gcs and wasb",
        SchemaShape::Claim => "volume_claim",
        SchemaShape::HostPath => "host_path",
        SchemaShape::Git => "git",
        SchemaShape::Registry => "registry",
        SchemaShape::Free => "free",
    }
}

fn check_bucket(sink: &mut Sink, kind: Kind, bucket: &str, path: &Ptr) {
    if bucket.chars().any(|c| c < ' ' || c == '\x7f') {
        sink.error(
            path,
            Code::InvalidBucket,
            "the bucket URL contains a control character (a newline or tab?); remove it",
        );
        return;
    }
    let example = format!("{}my-bucket/prefix", kind.bucket_schemes()[0]);
    if let Some(scheme) = kind
        .bucket_schemes()
        .iter()
        .find(|scheme| bucket.starts_with(**scheme))
    {
        if let Some(problem) = rules::bucket_name_problem(scheme, &bucket[scheme.len()..]) {
            sink.error(
                path,
                Code::InvalidBucket,
                format!("{problem}; write e.g. `{example}`"),
            );
        }
        return;
    }
    let other = [Kind::S3, Kind::Gcs, Kind::Wasb].into_iter().find(|other| {
        other
            .bucket_schemes()
            .iter()
            .any(|scheme| bucket.starts_with(scheme))
    });
    let message = match other {
        Some(other) => format!(
            "`{bucket}` is a {other} URL but the connection's kind is {kind}; write `{example}` or set `kind: {other}`"
        ),
        None => format!(
            "`{bucket}` does not start with {}; write e.g. `{example}`",
            schemes_text(kind)
        ),
    };
    sink.error(path, Code::BucketSchemeMismatch, message);
}

fn schemes_text(kind: Kind) -> String {
    kind.bucket_schemes()
        .iter()
        .map(|scheme| format!("`{scheme}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn resource(sink: &mut Sink, value: &Value, path: &Ptr, what: &str) -> Option<Resource> {
    let errors_before = error_count(sink);
    let map = object(sink, value, path, &format!("a {what}"), RESOURCE_FIELDS)?;
    let kube = if what == "secret" {
        "Secret"
    } else {
        "ConfigMap"
    };
    let name = string(
        sink,
        map,
        path,
        "name",
        Need::Required(&format!("the {kube}'s name")),
    );
    if let Some(name) = &name
        && !rules::is_dns_subdomain(name)
    {
        sink.error(
                &path.key("name"),
                Code::InvalidName,
                format!("`{name}` is not a valid {kube} name (a DNS-1123 subdomain: lowercase letters, digits, `-` and `.`); write `{}`", rules::suggest_label(name)),
            );
    }
    let mount_path = absolute_path(sink, map, path, "mountPath", Need::Optional);
    let items = string_list(sink, map, path, "items");
    if let Some(items) = &items {
        for (index, item) in items.iter().enumerate() {
            if !rules::is_key(item) || item.len() > rules::RESOURCE_NAME_MAX {
                sink.error(
                    &path.key("items").index(index),
                    Code::InvalidKey,
                    format!(
                        "`{item}` is not a valid {kube} key: use letters, digits, `-`, `_` and `.`"
                    ),
                );
            }
        }
    }
    let default_mode = get(map, "defaultMode")
        .and_then(|value| default_mode(sink, value, &path.key("defaultMode")));
    let host_path = string(sink, map, path, "hostPath", Need::Optional);
    let is_requested = boolean(sink, map, path, "isRequested");
    if error_count(sink) != errors_before {
        return None;
    }
    Some(Resource {
        name: name?,
        mount_path,
        items,
        default_mode,
        host_path,
        is_requested,
    })
}

fn default_mode(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<u32> {
    let fix = "write an octal string such as \"0400\" or an integer from 0 to 511";
    match value {
        Value::Number(number) => {
            match number.as_u64() {
                Some(mode) if mode <= u64::from(rules::MODE_MAX) => Some(mode as u32),
                Some(mode)
                    if mode.to_string().bytes().all(|b| (b'0'..=b'7').contains(&b))
                        && mode <= 7777 =>
                {
                    sink.error(path, Code::InvalidDefaultMode, format!("{mode} is more than 511; did you mean the octal mode \"0{mode}\"? Quote it"));
                    None
                }
                _ => {
                    sink.error(
                        path,
                        Code::InvalidDefaultMode,
                        format!("{number} is not a file mode; {fix}"),
                    );
                    None
                }
            }
        }
        Value::String(text) => match rules::parse_octal_mode(text) {
            Some(mode) if mode <= rules::MODE_MAX => Some(mode),
            _ => {
                sink.error(
                    path,
                    Code::InvalidDefaultMode,
                    format!("\"{text}\" is not an octal file mode; {fix}"),
                );
                None
            }
        },
        other => {
            sink.error(
                path,
                Code::InvalidType,
                format!(
                    "defaultMode must be a number or an octal string, not {}; {fix}",
                    type_name(other)
                ),
            );
            None
        }
    }
}

fn env(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<Env> {
    let errors_before = error_count(sink);
    let mut vars: Vec<(EnvVar, Ptr)> = Vec::new();
    let forms = "write `env` as a map (`NAME: value`), a list of `[NAME, value]` pairs, or a list of `{name: NAME, value: value}`";
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
                let item_path = path.index(index);
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
                        &item_path,
                        Code::InvalidType,
                        format!("a pair has 2 items, [NAME, value], not {}", pair.len()),
                    ),
                    Value::Object(_) => {
                        let Some(fields) = object(
                            sink,
                            item,
                            &item_path,
                            "an env variable",
                            &["name", "value"],
                        ) else {
                            continue;
                        };
                        let name = string(
                            sink,
                            fields,
                            &item_path,
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
                        &item_path,
                        Code::InvalidType,
                        format!("an env entry cannot be {}; {forms}", type_name(other)),
                    ),
                }
            }
        }
        other => {
            sink.error(
                path,
                Code::InvalidType,
                format!("env cannot be {}; {forms}", type_name(other)),
            );
            return None;
        }
    }
    let mut seen: HashMap<String, Ptr> = HashMap::new();
    for (var, var_path) in &vars {
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

fn env_value(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<String> {
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

fn annotations(
    sink: &mut Sink,
    map: &Map<String, Value>,
    path: &Ptr,
) -> Option<BTreeMap<String, String>> {
    let value = get(map, "annotations")?;
    let path = path.key("annotations");
    let Value::Object(entries) = value else {
        sink.error(
            &path,
            Code::InvalidType,
            format!(
                "annotations must be a mapping of strings, not {}",
                type_name(value)
            ),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        match value {
            Value::String(text) => {
                out.insert(key.clone(), text.clone());
            }
            other => sink.error(
                &path.key(key),
                Code::InvalidType,
                format!(
                    "annotation values are strings, not {}; quote it",
                    type_name(other)
                ),
            ),
        }
    }
    Some(out)
}

/// Parses a catalog: connections and an optional artifacts store, with the cross-field rules.
pub(crate) fn catalog(
    sink: &mut Sink,
    connections: Option<(&Value, Ptr)>,
    artifacts_store: Option<(&Value, Ptr)>,
) -> Option<Catalog> {
    let errors_before = error_count(sink);
    let mut parsed: Vec<Parsed> = Vec::new();
    if let Some((value, path)) = connections {
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    parsed.push(connection(sink, item, &path.index(index)));
                }
            }
            Value::Null => {}
            other => sink.error(
                &path,
                Code::InvalidType,
                format!("connections must be a list, not {}", type_name(other)),
            ),
        }
    }
    let store = artifacts_store.map(|(value, path)| {
        let store = connection(sink, value, &path);
        if let Some(kind) = store.kind
            && !kind.is_artifact() {
                sink.error(
                    &store.kind_path,
                    Code::InvalidArtifactsStore,
                    format!("the artifacts store cannot be of kind {kind}; use s3, gcs, wasb, host_path or volume_claim"),
                );
            }
        store
    });

    let mut names: HashMap<&str, &Ptr> = HashMap::new();
    let mut mounts: HashMap<(&str, &str), (&Option<String>, &Ptr)> = HashMap::new();
    for item in parsed.iter().chain(store.as_ref()) {
        if let Some(name) = &item.name
            && let Some(first) = names.insert(name, &item.name_path)
        {
            sink.error(
                    &item.name_path,
                    Code::DuplicateName,
                    format!("a connection named `{name}` is already defined at {}; names must be unique across connections and the artifacts store, rename one", first.0.trim_end_matches("/name")),
                );
            names.insert(name, first);
        }
        for (resource, mount_path, path, label) in &item.secret_mounts {
            match mounts.get(&(*label, resource.as_str())) {
                Some((first_mount, first_path)) if *first_mount != mount_path => sink.warning(
                    &path.key("mountPath"),
                    Code::ConflictingMount,
                    format!(
                        "{label} `{resource}` is also used at {} with mountPath {}; Polyaxon mounts each {label} once and keeps the first, so use the same mountPath",
                        first_path.0,
                        first_mount.as_deref().map_or("unset".to_owned(), |p| format!("`{p}`"))
                    ),
                ),
                Some(_) => {}
                None => {
                    mounts.insert((*label, resource.as_str()), (mount_path, path));
                }
            }
        }
    }
    if error_count(sink) != errors_before {
        return None;
    }
    Some(Catalog {
        connections: parsed
            .into_iter()
            .filter_map(|item| item.connection)
            .collect(),
        artifacts_store: store.and_then(|item| item.connection),
    })
}

/// One `run` (or replica) of a job: the connections it names and its init entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSection {
    /// Where the section is in the document.
    pub path: String,
    /// `connections:`.
    pub connections: Vec<String>,
    /// `init:`.
    pub init: Vec<Init>,
}

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
    let connection = string(sink, map, path, "connection", Need::Optional);
    let target = connection.as_ref().and_then(|name| {
        known
            .check(sink, name, &path.key("connection"))
            .then(|| known.get(name))
            .flatten()
    });

    let artifacts = get(map, "artifacts").and_then(|value| {
        let artifacts_path = path.key("artifacts");
        let fields = object(
            sink,
            value,
            &artifacts_path,
            "`artifacts`",
            ARTIFACTS_FIELDS,
        )?;
        let files = entries(sink, fields, &artifacts_path, "files");
        let dirs = entries(sink, fields, &artifacts_path, "dirs");
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
    });
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
    let git = get(map, "git").and_then(|value| {
        let git_path = path.key("git");
        let fields = object(sink, value, &git_path, "`git`", GIT_FIELDS)?;
        let url = string(sink, fields, &git_path, "url", Need::Optional);
        if url.is_none() && connection.is_none() {
            sink.error(&git_path.key("url"), Code::MissingField, "a git init entry needs `git.url` or a `connection` of kind git");
        }
        if let (Some(name), Some(target)) = (&connection, target)
            && !matches!(target.kind, Kind::Git | Kind::Ssh) {
                sink.error(&path.key("connection"), Code::InitConnectionKind, format!("`{name}` is a connection of kind {}; a git init entry needs a git (or ssh) connection", target.kind));
            }
        let revision = string(sink, fields, &git_path, "revision", Need::Optional);
        let flags = string_list(sink, fields, &git_path, "flags");
        Some(InitGit { url, revision, flags })
    });
    let file = get(map, "file").and_then(|value| {
        let file_path = path.key("file");
        let fields = object(sink, value, &file_path, "`file`", INIT_FILE_FIELDS)?;
        let content = string(
            sink,
            fields,
            &file_path,
            "content",
            Need::Required("the file's content"),
        );
        let filename = string(sink, fields, &file_path, "filename", Need::Optional);
        if let Some(filename) = &filename {
            check_relative(sink, filename, &file_path.key("filename"));
        }
        let chmod = string(sink, fields, &file_path, "chmod", Need::Optional);
        let kind = string(sink, fields, &file_path, "kind", Need::Optional);
        Some(InitFile {
            content: content?,
            filename,
            chmod,
            kind,
        })
    });
    let dockerfile = free_object(sink, map, path, "dockerfile");
    let tensorboard = free_object(sink, map, path, "tensorboard");
    let container = free_object(sink, map, path, "container");
    let lineage_ref = string(sink, map, path, "lineageRef", Need::Optional);
    let model_ref = string(sink, map, path, "modelRef", Need::Optional);
    let artifact_ref = string(sink, map, path, "artifactRef", Need::Optional);
    let destination = string(sink, map, path, "path", Need::Optional);
    if let Some(destination) = &destination {
        let destination_path = path.key("path");
        if let Some(reason) = rules::escape_reason(destination) {
            sink.error(
                &destination_path,
                Code::PathEscape,
                format!(
                    "`{destination}` {reason}; give an absolute path without `..`, e.g. `/data`"
                ),
            );
        } else if !destination.starts_with('/') {
            sink.error(&destination_path, Code::InvalidMountPath, format!("`{destination}` is relative; the destination is a mount path, write it absolute, e.g. `/{destination}`"));
        }
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

fn entries(
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
fn check_relative(sink: &mut Sink, text: &str, path: &Ptr) -> bool {
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

fn free_object(
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

// Small typed readers. Null counts as absent, as it does for Polyaxon's optional fields.

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

fn unknown_field(sink: &mut Sink, path: &Ptr, key: &str, fields: &[&str], what: &str) {
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

fn string(
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

fn absolute_path(
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

fn boolean(sink: &mut Sink, map: &Map<String, Value>, path: &Ptr, key: &str) -> Option<bool> {
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

fn error_count(sink: &Sink) -> usize {
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
