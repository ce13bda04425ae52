//! The checked-in `schemas/` match the Rust types; `cargo xtask schemas` rewrites them.

use std::path::Path;

#[test]
fn schemas_are_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let update = std::env::var_os("PLX_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, text) in plx_connections::schema::files() {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if update {
            std::fs::write(&path, &text)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        } else {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/{} are stale: run `cargo xtask schemas`",
        stale.join(", schemas/")
    );
}

#[test]
fn schemas_compile_and_accept_the_seed_example() {
    let catalog = jsonschema::validator_for(&plx_connections::schema::catalog())
        .expect("the catalog schema compiles");
    let seed = serde_json::json!({"connections": [{"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "s3://bucket/"}, "secret": {"name": "s3-secret"}}]});
    assert!(catalog.is_valid(&seed));
    let wrong = serde_json::json!({"connections": [{"name": "s3-dataset1", "kind": "s3", "schema": {"bucket": "gs://bucket/"}}]});
    assert!(!catalog.is_valid(&wrong));
}
