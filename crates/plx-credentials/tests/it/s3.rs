//! The resolver against real servers: s3s-fs (or MinIO) in a container, a rustls terminator with
//! a test CA in front of it, and moto for STS.

use std::path::Path;

use aws_credential_types::provider::ProvideCredentials;
use plx_connections::Connection;
use plx_credentials::{Environment, S3Settings, Source};
use plx_testkit::{Moto, S3Server, TlsProxy};

pub(crate) const BUCKET: &str = "datasets";

pub(crate) fn connection(bucket: &str, extra: &str) -> Connection {
    let yaml = format!(
        "{{name: data, kind: s3, schema: {{bucket: 's3://{bucket}/v1'}}, secret: {{name: s3-secret}}{extra}}}"
    );
    let report = plx_connections::validate(&yaml, &[]);
    report
        .catalog()
        .and_then(|catalog| catalog.connections.first().cloned())
        .unwrap_or_else(|| panic!("{yaml}: {:?}", report.diagnostics))
}

async fn seeded() -> anyhow::Result<S3Server> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    server
        .seed(
            BUCKET,
            &[("v1/train/a.csv", b"a,b\n1,2\n"), ("v1/labels.csv", b"x\n")],
        )
        .await?;
    Ok(server)
}

async fn list(connection: &Connection, env: &Environment) -> Result<Vec<String>, String> {
    let settings = S3Settings::resolve(connection, env).map_err(|error| error.to_string())?;
    let client = plx_credentials::client(&settings)
        .await
        .map_err(|error| error.to_string())?;
    let output = client
        .list_objects_v2()
        .bucket(&settings.bucket)
        .prefix(format!("{}/", settings.prefix))
        .send()
        .await
        .map_err(|error| aws_sdk_s3::error::DisplayErrorContext(error).to_string())?;
    Ok(output
        .contents()
        .iter()
        .filter_map(|object| object.key().map(str::to_owned))
        .collect())
}

pub(crate) fn keys(server: &S3Server, endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), server.access_key.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            server.secret_key.clone(),
        ),
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
    ]
}

pub(crate) fn env(pairs: &[(String, String)]) -> Environment {
    Environment::from_pairs(
        pairs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    )
}

#[tokio::test]
async fn static_keys_from_the_process_env() -> anyhow::Result<()> {
    let server = seeded().await?;
    let objects = list(
        &connection(BUCKET, ""),
        &env(&keys(&server, &server.endpoint)),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    assert_eq!(objects, ["v1/labels.csv", "v1/train/a.csv"]);
    Ok(())
}

#[tokio::test]
async fn static_keys_from_mounted_secret_files_with_trailing_newlines() -> anyhow::Result<()> {
    let server = seeded().await?;
    let secrets = tempfile::tempdir()?;
    // `kubectl create secret --from-file` keeps the newline; Polyaxon then sends a broken key.
    std::fs::write(
        secrets.path().join("AWS_ACCESS_KEY_ID"),
        format!("{}\n", server.access_key),
    )?;
    std::fs::write(
        secrets.path().join("AWS_SECRET_ACCESS_KEY"),
        format!("{}\n", server.secret_key),
    )?;
    let connection = connection(
        BUCKET,
        &format!(", env: {{AWS_ENDPOINT_URL: '{}'}}", server.endpoint),
    )
    .clone();
    let mut connection = connection;
    if let Some(secret) = &mut connection.secret {
        secret.mount_path = Some(secrets.path().display().to_string());
    }
    let settings = S3Settings::resolve(&connection, &Environment::default())?;
    assert_eq!(
        settings
            .secret_access_key
            .as_ref()
            .map(|s| s.source.clone()),
        Some(Source::SecretFile(
            secrets.path().join("AWS_SECRET_ACCESS_KEY")
        ))
    );
    assert_eq!(
        list(&connection, &Environment::default())
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn wrong_keys_are_refused_by_the_server() -> anyhow::Result<()> {
    let server = seeded().await?;
    let mut pairs = keys(&server, &server.endpoint);
    pairs[1].1 = "not-the-secret".to_owned();
    let error = list(&connection(BUCKET, ""), &env(&pairs))
        .await
        .expect_err("wrong keys must fail");
    assert!(
        error.contains("SignatureDoesNotMatch")
            || error.contains("AccessDenied")
            || error.contains("InvalidAccessKeyId"),
        "{error}"
    );
    assert!(
        !error.contains("not-the-secret"),
        "the secret leaked: {error}"
    );
    Ok(())
}

#[tokio::test]
async fn session_token_is_sent_with_the_keys() -> anyhow::Result<()> {
    let server = seeded().await?;
    let mut pairs = keys(&server, &server.endpoint);
    pairs.push((
        "AWS_SESSION_TOKEN".to_owned(),
        "session-token-value".to_owned(),
    ));
    let settings = S3Settings::resolve(&connection(BUCKET, ""), &env(&pairs))?;
    let config = plx_credentials::sdk_config(&settings).await?;
    let credentials = config
        .credentials_provider()
        .expect("a provider")
        .provide_credentials()
        .await?;
    assert_eq!(credentials.session_token(), Some("session-token-value"));
    Ok(())
}

#[tokio::test]
async fn use_ssl_false_means_plain_http_for_an_endpoint_without_scheme() -> anyhow::Result<()> {
    let server = seeded().await?;
    let mut pairs = keys(&server, &format!("127.0.0.1:{}", server.port));
    pairs.push(("AWS_USE_SSL".to_owned(), "false".to_owned()));
    assert_eq!(
        list(&connection(BUCKET, ""), &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    // The same endpoint with the default (TLS) cannot talk to a plain HTTP server.
    pairs.pop();
    assert!(list(&connection(BUCKET, ""), &env(&pairs)).await.is_err());
    Ok(())
}

#[tokio::test]
async fn custom_ca_bundle_is_trusted_and_required() -> anyhow::Result<()> {
    let server = seeded().await?;
    let proxy = TlsProxy::start(([127, 0, 0, 1], server.port).into()).await?;
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), &proxy.ca_pem)?;
    let mut pairs = keys(&server, &proxy.endpoint());
    let untrusted = list(&connection(BUCKET, ""), &env(&pairs))
        .await
        .expect_err("an unknown CA must fail");
    assert!(
        untrusted.to_lowercase().contains("certificate") || untrusted.contains("UnknownIssuer"),
        "{untrusted}"
    );
    pairs.push(("AWS_CA_BUNDLE".to_owned(), ca.path().display().to_string()));
    assert_eq!(
        list(&connection(BUCKET, ""), &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn ca_bundle_named_relative_to_the_secret_mount() -> anyhow::Result<()> {
    let server = seeded().await?;
    let proxy = TlsProxy::start(([127, 0, 0, 1], server.port).into()).await?;
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("ca.pem"), &proxy.ca_pem)?;
    let mut connection = connection(BUCKET, "");
    if let Some(secret) = &mut connection.secret {
        secret.mount_path = Some(secrets.path().display().to_string());
    }
    let mut pairs = keys(&server, &proxy.endpoint());
    pairs.push(("AWS_CA_BUNDLE".to_owned(), "ca.pem".to_owned()));
    assert_eq!(
        list(&connection, &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn verify_off_accepts_an_unknown_certificate() -> anyhow::Result<()> {
    let server = seeded().await?;
    let proxy = TlsProxy::start(([127, 0, 0, 1], server.port).into()).await?;
    let mut pairs = keys(&server, &proxy.endpoint());
    pairs.push(("AWS_VERIFY_SSL".to_owned(), "false".to_owned()));
    assert_eq!(
        list(&connection(BUCKET, ""), &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    Ok(())
}

async fn moto_bucket(moto: &Moto) -> anyhow::Result<()> {
    let client = plx_testkit::s3::client_for(&moto.endpoint, "us-east-1", "testing", "testing");
    plx_testkit::s3::create_bucket(&client, BUCKET).await?;
    plx_testkit::s3::put(&client, BUCKET, "v1/a.csv", "1").await
}

#[tokio::test]
async fn assume_role_through_sts() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    moto_bucket(&moto).await?;
    let pairs = [
        ("AWS_ACCESS_KEY_ID", "AKIDBASEKEY"),
        ("AWS_SECRET_ACCESS_KEY", "base-secret"),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_STS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ASSUME_ROLE", "true"),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/datasets-reader",
        ),
        ("AWS_SESSION_DURATION", "900"),
    ];
    let settings = S3Settings::resolve(&connection(BUCKET, ""), &Environment::from_pairs(pairs))?;
    assert_eq!(
        settings.credentials_kind(),
        "static keys, then STS AssumeRole"
    );
    let config = plx_credentials::sdk_config(&settings).await?;
    let credentials = config
        .credentials_provider()
        .expect("a provider")
        .provide_credentials()
        .await?;
    assert_ne!(
        credentials.access_key_id(),
        "AKIDBASEKEY",
        "the role's credentials, not the base keys"
    );
    assert!(credentials.session_token().is_some());
    assert_eq!(
        list(&connection(BUCKET, ""), &Environment::from_pairs(pairs))
            .await
            .map_err(anyhow::Error::msg)?,
        ["v1/a.csv"]
    );
    Ok(())
}

#[tokio::test]
async fn web_identity_token_through_sts() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    moto_bucket(&moto).await?;
    let token = tempfile::NamedTempFile::new()?;
    std::fs::write(token.path(), "eyJhbGciOiJSUzI1NiJ9.e30.signature\n")?;
    let token_path = token.path().display().to_string();
    let pairs = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_STS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
    ];
    let settings = S3Settings::resolve(&connection(BUCKET, ""), &Environment::from_pairs(pairs))?;
    assert_eq!(settings.credentials_kind(), "STS AssumeRoleWithWebIdentity");
    let config = plx_credentials::sdk_config(&settings).await?;
    let credentials = config
        .credentials_provider()
        .expect("a provider")
        .provide_credentials()
        .await?;
    assert!(credentials.session_token().is_some());
    assert!(credentials.expiry().is_some());
    assert_eq!(
        list(&connection(BUCKET, ""), &Environment::from_pairs(pairs))
            .await
            .map_err(anyhow::Error::msg)?,
        ["v1/a.csv"]
    );
    let _ = Path::new(&token_path);
    Ok(())
}

#[tokio::test]
async fn client_from_name_reads_the_pod_catalog() -> anyhow::Result<()> {
    let server = seeded().await?;
    let catalog = format!(
        r#"{{"connections":[{{"name":"s3-dataset1","kind":"s3","schema":{{"bucket":"s3://{BUCKET}/v1"}},"secret":{{"name":"s3-secret"}},"env":{{"AWS_ENDPOINT_URL":"{}"}}}}]}}"#,
        server.endpoint
    );
    let env = Environment::from_pairs([
        ("POLYAXON_CONNECTIONS_CATALOG", catalog.as_str()),
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
    ]);
    let client = plx_credentials::client_from_name_in("s3-dataset1", &env).await?;
    let listed = client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("v1/")
        .send()
        .await?;
    assert_eq!(listed.key_count(), Some(2));
    let missing = plx_credentials::client_from_name_in("s3-dataset9", &env)
        .await
        .expect_err("unknown name");
    assert_eq!(
        missing.to_string(),
        "no connection named `s3-dataset9` in the catalog; known: s3-dataset1"
    );
    let error = plx_credentials::client_from_name_in("s3-dataset1", &Environment::default())
        .await
        .expect_err("no catalog");
    assert!(matches!(
        error,
        plx_credentials::Error::Lookup(plx_connections::LookupError::NoCatalog)
    ));
    Ok(())
}

#[tokio::test]
async fn https_proxy_carries_the_requests_and_no_proxy_bypasses_it() -> anyhow::Result<()> {
    let server = seeded().await?;
    let proxy = plx_testkit::HttpProxy::start().await?;
    let mut pairs = keys(&server, &server.endpoint);
    pairs.push(("HTTPS_PROXY".to_owned(), proxy.url()));
    assert_eq!(
        list(&connection(BUCKET, ""), &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    let through = proxy.connections();
    assert!(through > 0, "the request did not go through the proxy");
    pairs.push(("NO_PROXY".to_owned(), "127.0.0.1".to_owned()));
    assert_eq!(
        list(&connection(BUCKET, ""), &env(&pairs))
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        2
    );
    assert_eq!(
        proxy.connections(),
        through,
        "NO_PROXY must bypass the proxy"
    );
    Ok(())
}
