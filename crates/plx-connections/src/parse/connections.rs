//! Connections and catalogs: one connection's fields (its kind, schema, Secret, ConfigMap,
//! annotations), then a catalog's (names unique across connections and the store, mounts that
//! agree).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::{env::env, value::*};
use crate::{
    diag::{Code, Ptr, Sink},
    kind::{Kind, SchemaShape},
    model::*,
    rules,
};

/// Longest connection name whose Polyaxon init container name (`polyaxon-init-artifacts-<name>-<10 hex>`)
/// still fits in 63 characters.
pub(super) const INIT_NAME_MAX: usize = 63 - "polyaxon-init-artifacts-".len() - "-0123456789".len();

pub(super) const CONNECTION_FIELDS: &[&str] = &[
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

pub(super) const RESOURCE_FIELDS: &[&str] = &[
    "name",
    "mountPath",
    "items",
    "defaultMode",
    "hostPath",
    "isRequested",
];

pub(super) const BUCKET_FIELDS: &[&str] = &["bucket"];

pub(super) const CLAIM_FIELDS: &[&str] = &["volumeClaim", "mountPath", "readOnly"];

pub(super) const HOST_PATH_FIELDS: &[&str] = &["hostPath", "mountPath", "readOnly"];

pub(super) const GIT_FIELDS: &[&str] = &["url", "revision", "flags"];

pub(super) const REGISTRY_FIELDS: &[&str] = &["url", "insecure"];

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
    if let Some(name) = &name {
        check_name(sink, name, &parsed.name_path);
    }
    parsed.name = name.clone();

    let kind = kind_of(sink, map, &parsed.kind_path);
    parsed.kind = kind;

    if let (Some(name), Some(kind)) = (&name, kind) {
        check_init_name(sink, name, kind, &parsed.name_path);
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
        check_credentials(sink, map, kind, path);
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

/// A connection's name becomes volume and container names: a DNS-1123 label.
fn check_name(sink: &mut Sink, name: &str, path: &Ptr) {
    if rules::is_dns_label(name) {
        return;
    }
    let hint = rules::suggest_label(name);
    let hint = if hint.is_empty() {
        "s3-dataset1".to_owned()
    } else {
        hint
    };
    sink.error(
                path,
                Code::InvalidName,
                format!(
                    "`{name}` is not a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit): it becomes volume and container names; write `{hint}`"
                ),
            );
}

/// The connection's kind, one of Polyaxon's.
fn kind_of(sink: &mut Sink, map: &Map<String, Value>, path: &Ptr) -> Option<Kind> {
    match get(map, "kind") {
        None => {
            sink.error(
                path,
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
                    path,
                    Code::UnknownKind,
                    format!("unknown kind `{text}`; {hint}valid kinds: {}", kinds_list()),
                );
                None
            }
        },
        Some(other) => {
            sink.error(
                path,
                Code::InvalidType,
                format!(
                    "kind must be a string, not {}; one of {}",
                    type_name(other),
                    kinds_list()
                ),
            );
            None
        }
    }
}

/// Polyaxon names an artifact connection's init containers after it; Kubernetes caps the length.
fn check_init_name(sink: &mut Sink, name: &str, kind: Kind, path: &Ptr) {
    if !(kind.is_artifact() && rules::is_dns_label(name) && name.len() > INIT_NAME_MAX) {
        return;
    }
    sink.warning(
                path,
                Code::NameTooLongForInit,
                format!(
                    "Polyaxon names this connection's init containers `polyaxon-init-artifacts-{name}-<10 hex>`, longer than the 63 characters Kubernetes allows; keep the name to {INIT_NAME_MAX} characters"
                ),
            );
}

/// A bucket connection with nothing to sign with uses the ambient credential chain: said, in
/// case that is not meant.
fn check_credentials(sink: &mut Sink, map: &Map<String, Value>, kind: Kind, path: &Ptr) {
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

pub(super) fn kinds_list() -> String {
    Kind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn connection_schema(
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
    if written_for_another_kind(sink, kind, map, path) {
        return None;
    }
    foreign_fields(sink, kind, map, path);
    typed_schema(sink, kind, map, path)
}

/// A schema written for another kind, e.g. `bucket` on a volume_claim: one clear error, not a
/// list of unknown and missing fields.
fn written_for_another_kind(
    sink: &mut Sink,
    kind: Kind,
    map: &Map<String, Value>,
    path: &Ptr,
) -> bool {
    let shape = kind.schema_shape();
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
        return true;
    }
    false
}

/// Each field the kind's schema does not have: another kind's (said so), or unknown.
fn foreign_fields(sink: &mut Sink, kind: Kind, map: &Map<String, Value>, path: &Ptr) {
    let shape = kind.schema_shape();
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
}

/// The schema's fields, read into its shape's type.
fn typed_schema(
    sink: &mut Sink,
    kind: Kind,
    map: &Map<String, Value>,
    path: &Ptr,
) -> Option<ConnectionSchema> {
    match kind.schema_shape() {
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

pub(super) fn shape_field_list(shape: SchemaShape) -> &'static [&'static str] {
    match shape {
        SchemaShape::Bucket => BUCKET_FIELDS,
        SchemaShape::Claim => CLAIM_FIELDS,
        SchemaShape::HostPath => HOST_PATH_FIELDS,
        SchemaShape::Git => GIT_FIELDS,
        SchemaShape::Registry => REGISTRY_FIELDS,
        SchemaShape::Free => &[],
    }
}

pub(super) fn shape_fields(shape: SchemaShape) -> String {
    let fields: Vec<String> = shape_field_list(shape)
        .iter()
        .map(|field| format!("`{field}`"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

pub(super) fn shape_kinds(shape: SchemaShape) -> &'static str {
    match shape {
        SchemaShape::Bucket => "s3, gcs and wasb",
        SchemaShape::Claim => "volume_claim",
        SchemaShape::HostPath => "host_path",
        SchemaShape::Git => "git",
        SchemaShape::Registry => "registry",
        SchemaShape::Free => "free",
    }
}

pub(super) fn check_bucket(sink: &mut Sink, kind: Kind, bucket: &str, path: &Ptr) {
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

pub(super) fn schemes_text(kind: Kind) -> String {
    kind.bucket_schemes()
        .iter()
        .map(|scheme| format!("`{scheme}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

pub(super) fn resource(sink: &mut Sink, value: &Value, path: &Ptr, what: &str) -> Option<Resource> {
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

pub(super) fn default_mode(sink: &mut Sink, value: &Value, path: &Ptr) -> Option<u32> {
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

pub(super) fn annotations(
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
