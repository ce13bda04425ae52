//! One pass over a JSON value that builds the typed model and reports every problem on the way.
//!
//! Parsing never stops at the first problem: each field is checked on its own, and a value is
//! built only where its part of the document had no error. `value` reads typed fields,
//! `connections` a connection and a catalog, `env` a connection's environment, `jobs` a job's
//! sections and init entries.

mod connections;
mod env;
mod jobs;
mod value;

pub(crate) use self::{
    connections::{catalog, connection},
    jobs::{Known, job_section},
    value::{get, object, string_list, type_name},
};

#[cfg(test)]
mod tables {
    //! Each parser's field table (the keys it accepts, and offers in a did-you-mean) is the
    //! model type's own: the properties schemars derives from its serde names.

    use schemars::JsonSchema;

    use super::{connections::*, jobs::*};
    use crate::model::*;

    fn properties<T: JsonSchema>() -> Vec<String> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
        let mut keys: Vec<String> = schema["properties"]
            .as_object()
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn table(fields: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_field_table_is_its_types_serde_fields() {
        let pairs = [
            (
                "Connection",
                table(CONNECTION_FIELDS),
                properties::<Connection>(),
            ),
            ("Resource", table(RESOURCE_FIELDS), properties::<Resource>()),
            (
                "BucketSchema",
                table(BUCKET_FIELDS),
                properties::<BucketSchema>(),
            ),
            (
                "ClaimSchema",
                table(CLAIM_FIELDS),
                properties::<ClaimSchema>(),
            ),
            (
                "HostPathSchema",
                table(HOST_PATH_FIELDS),
                properties::<HostPathSchema>(),
            ),
            ("GitSchema", table(GIT_FIELDS), properties::<GitSchema>()),
            (
                "RegistrySchema",
                table(REGISTRY_FIELDS),
                properties::<RegistrySchema>(),
            ),
            ("Init", table(INIT_FIELDS), properties::<Init>()),
            (
                "Artifacts",
                table(ARTIFACTS_FIELDS),
                properties::<Artifacts>(),
            ),
            (
                "InitFile",
                table(INIT_FILE_FIELDS),
                properties::<InitFile>(),
            ),
        ];
        for (name, fields, derived) in pairs {
            assert_eq!(
                fields, derived,
                "{name}: the parser's table and the type's fields"
            );
        }
    }
}
