//! The rules that span fields, said in JSON Schema: the transforms the model types' derives run
//! (which schema shape a kind takes, which bucket scheme, which init fields exclude each other).
//! They depend on the kinds and the value rules only, so the model and the schemas built from it
//! do not depend on each other.

use schemars::Schema;
use serde_json::{Value, json};

use crate::{
    kind::{Kind, SchemaShape},
    rules,
};

/// The fields of an init entry, in one table: first those of which at most one may be set (what
/// the entry initialises), then those that go with any of them.
pub const INIT_FIELDS: &[&str] = &[
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

/// The fields of an init entry of which at most one may be set.
pub const INIT_EXCLUSIVE: &[&str] = INIT_FIELDS.split_at(9).0;

fn definition(name: &str) -> Value {
    json!({"$ref": format!("#/$defs/{name}")})
}

fn when_kind(kinds: &[Kind], then: Value) -> Value {
    let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    json!({
        "if": {"properties": {"kind": {"enum": names}}, "required": ["kind"]},
        "then": then,
    })
}

pub(crate) fn connection_rules(schema: &mut Schema) {
    let mut rules = Vec::new();
    for kind in [Kind::S3, Kind::Gcs, Kind::Wasb] {
        let pattern = match kind {
            Kind::S3 => rules::S3_BUCKET_PATTERN,
            Kind::Gcs => rules::GCS_BUCKET_PATTERN,
            _ => rules::WASB_BUCKET_PATTERN,
        };
        let mut bucket = definition("BucketSchema");
        bucket["properties"] = json!({"bucket": {"pattern": pattern}});
        rules.push(when_kind(
            &[kind],
            json!({"required": ["schema"], "properties": {"schema": bucket}}),
        ));
    }
    let free: Vec<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|kind| kind.schema_shape() == SchemaShape::Free)
        .collect();
    rules.push(when_kind(
        &[Kind::VolumeClaim],
        json!({"required": ["schema"], "properties": {"schema": definition("ClaimSchema")}}),
    ));
    rules.push(when_kind(
        &[Kind::HostPath],
        json!({"required": ["schema"], "properties": {"schema": definition("HostPathSchema")}}),
    ));
    rules.push(when_kind(
        &[Kind::Registry],
        json!({"required": ["schema"], "properties": {"schema": definition("RegistrySchema")}}),
    ));
    rules.push(when_kind(
        &[Kind::Git],
        json!({"properties": {"schema": {"anyOf": [definition("GitSchema"), {"type": "null"}]}}}),
    ));
    rules.push(when_kind(
        &free,
        json!({"properties": {"schema": {"type": ["object", "null"]}}}),
    ));
    schema.insert("allOf".to_owned(), Value::Array(rules));
}

pub(crate) fn resource_rules(schema: &mut Schema) {
    // `schema_with` cannot tell that the field is an Option.
    schema.insert("required".to_owned(), json!(["name"]));
    if let Some(items) = schema
        .get_mut("properties")
        .and_then(|properties| properties.get_mut("items"))
    {
        items["items"] = json!({"type": "string", "pattern": rules::KEY_PATTERN, "maxLength": rules::RESOURCE_NAME_MAX});
    }
}

pub(crate) fn catalog_rules(schema: &mut Schema) {
    let artifact: Vec<&str> = Kind::ALL
        .iter()
        .filter(|kind| kind.is_artifact())
        .map(|kind| kind.as_str())
        .collect();
    if let Some(properties) = schema.get_mut("properties") {
        properties["connections"] =
            json!({"type": ["array", "null"], "items": definition("Connection")});
        properties["mountConnections"] = json!({
            "description": "Polyaxon's chart mounts these connections into its service pods.",
            "type": ["array", "null"],
            "items": {"type": "string"},
        });
    }
    schema.remove("required");
    schema.insert(
        "allOf".to_owned(),
        json!([{"properties": {"artifactsStore": {"properties": {"kind": {"enum": artifact}}}}}]),
    );
    schema.insert("description".to_owned(), json!("Connections and the artifacts store; other keys (the rest of a Helm values file) are allowed."));
}

pub(crate) fn init_rules(schema: &mut Schema) {
    let mut rules: Vec<Value> = INIT_EXCLUSIVE
        .iter()
        .map(|field| {
            let others: serde_json::Map<String, Value> = INIT_EXCLUSIVE
                .iter()
                .filter(|other| *other != field)
                .map(|other| ((*other).to_owned(), json!({"type": "null"})))
                .collect();
            let mut present = serde_json::Map::new();
            present.insert((*field).to_owned(), json!({"not": {"type": "null"}}));
            json!({
                "if": {"properties": present, "required": [field]},
                "then": {"properties": others},
            })
        })
        .collect();
    // A git entry without a URL clones the connection's repository, so it needs a connection.
    rules.push(json!({
        "if": {
            "properties": {"git": {"type": "object", "properties": {"url": {"type": "null"}}}, "connection": {"type": "null"}},
            "required": ["git"],
        },
        "then": false,
    }));
    schema.insert("allOf".to_owned(), Value::Array(rules));
}
