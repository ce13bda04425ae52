//! Property tests: any valid model value survives serialise → parse unchanged, in JSON and YAML,
//! and the parser never panics on arbitrary documents.

use std::collections::BTreeMap;

use plx_connections::{
    BucketSchema, Catalog, ClaimSchema, Connection, ConnectionSchema, Env, EnvVar, GitSchema, Kind,
    Resource,
};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        label(),
        proptest::option::of("/[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}"),
        proptest::option::of(proptest::collection::vec("[A-Z_]{1,12}", 0..3)),
        proptest::option::of(0u32..=0o777),
    )
        .prop_map(|(name, mount_path, items, default_mode)| Resource {
            name,
            mount_path,
            items,
            default_mode,
            host_path: None,
            is_requested: None,
        })
}

fn env() -> impl Strategy<Value = Env> {
    proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,12}", "[ -~]{0,20}", 0..4).prop_map(|vars| {
        Env(vars
            .into_iter()
            .map(|(name, value)| EnvVar { name, value })
            .collect())
    })
}

fn connection() -> impl Strategy<Value = Connection> {
    let bucket = (
        "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]",
        "(/[a-zA-Z0-9 ._-]{1,10}){0,3}",
    )
        .prop_map(|(name, prefix)| {
            (
                Kind::S3,
                Some(ConnectionSchema::Bucket(BucketSchema {
                    bucket: format!("s3://{name}{prefix}"),
                })),
            )
        });
    let claim = (label(), "/[a-z]{1,10}", proptest::option::of(any::<bool>())).prop_map(
        |(claim, mount_path, read_only)| {
            (
                Kind::VolumeClaim,
                Some(ConnectionSchema::Claim(ClaimSchema {
                    volume_claim: claim,
                    mount_path,
                    read_only,
                })),
            )
        },
    );
    let git = proptest::option::of("https://[a-z]{1,10}\\.com/[a-z]{1,10}").prop_map(|url| {
        (
            Kind::Git,
            Some(ConnectionSchema::Git(GitSchema {
                url,
                revision: None,
                flags: Some(vec!["--depth=1".to_owned()]),
            })),
        )
    });
    let free = Just((Kind::Postgres, None));
    (
        label(),
        prop_oneof![bucket, claim, git, free],
        proptest::option::of("[ -~]{0,30}"),
        proptest::option::of(resource()),
        proptest::option::of(resource()),
        proptest::option::of(env()),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z./]{1,20}",
            "[ -~]{0,20}",
            0..3,
        )),
    )
        .prop_map(
            |(name, (kind, schema), description, secret, config_map, env, annotations)| {
                Connection {
                    name,
                    kind,
                    description,
                    tags: None,
                    schema,
                    secret,
                    config_map,
                    env,
                    annotations: annotations.map(|map| map.into_iter().collect::<BTreeMap<_, _>>()),
                    is_alias: None,
                }
            },
        )
}

fn unique(connections: Vec<Connection>) -> Vec<Connection> {
    let mut seen = std::collections::HashSet::new();
    connections
        .into_iter()
        .filter(|connection| seen.insert(connection.name.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn catalog_round_trips_through_json_and_yaml(connections in proptest::collection::vec(connection(), 0..5)) {
        let catalog = Catalog { connections: unique(connections), artifacts_store: None };
        for text in [serde_json::to_string(&catalog).expect("serialises"), serde_yaml::to_string(&catalog).expect("serialises")] {
            let report = plx_connections::validate(&text, &[]);
            let errors: Vec<String> = report.diagnostics.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
            prop_assert!(errors.is_empty(), "{errors:?}\n{text}");
            prop_assert_eq!(report.catalog(), Some(&catalog), "{}", text);
        }
    }

    #[test]
    fn serialised_connections_pass_the_json_schema(connection in connection()) {
        let schema = jsonschema::validator_for(&plx_connections::schema::connection()).expect("a valid schema");
        let value = serde_json::to_value(&connection).expect("serialises");
        prop_assert!(schema.is_valid(&value), "{}", value);
    }

    #[test]
    fn arbitrary_yaml_never_panics(text in "[\\[\\]{}:,&*! \n\\-a-z0-9\"'/.]{0,200}") {
        let _ = plx_connections::validate(&text, &[]);
    }
}
