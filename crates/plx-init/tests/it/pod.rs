//! A pod's init container as the integration tests run it: the real plx-init with one S3
//! connection `data` (`s3://datasets/v1`) on a store, its keys in the environment.

use std::{path::Path, process::Command};

use plx_testkit::{Moto, S3Server};

/// Where the connection's objects are, and its keys.
pub(crate) struct Store {
    pub(crate) endpoint: String,
    pub(crate) access_key: String,
    pub(crate) secret_key: String,
}

impl Store {
    pub(crate) fn of(server: &S3Server) -> Store {
        Store {
            endpoint: server.endpoint.clone(),
            access_key: server.access_key.clone(),
            secret_key: server.secret_key.clone(),
        }
    }

    /// moto, which keeps versions and lists ETags, with its fixed keys.
    pub(crate) fn moto(moto: &Moto) -> Store {
        Store {
            endpoint: moto.endpoint.clone(),
            access_key: "testing".to_owned(),
            secret_key: "testing".to_owned(),
        }
    }
}

/// plx-init with `args`, as the connection's init container runs it.
pub(crate) fn command(store: &Store, context: &Path, args: &[&str]) -> Command {
    let catalog = format!(
        r#"{{"connections":[{{"name":"data","kind":"s3","schema":{{"bucket":"s3://datasets/v1"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{}"}}}}]}}"#,
        store.endpoint
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_plx-init"));
    command
        .args(args)
        .env_clear()
        .env("POLYAXON_CONNECTIONS_CATALOG", catalog)
        .env("POLYAXON_CONTEXT_ROOT", context)
        .env("AWS_ACCESS_KEY_ID", &store.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &store.secret_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Its exit code and what it said on stderr.
pub(crate) fn run(command: &mut Command) -> (i32, String) {
    let output = command.output().expect("plx-init runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
