//! Building the `aws_sdk_s3::Client` for resolved settings.

use std::{
    path::PathBuf,
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use aws_config::{BehaviorVersion, Region, sts::AssumeRoleProvider};
use aws_credential_types::{
    Credentials,
    provider::{
        self, ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
    },
};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::{
    Connector,
    proxy::ProxyConfig,
    tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode},
};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::timeout::TimeoutConfig;
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::{
    Error,
    settings::{Addressing, S3Settings},
};

/// How long to wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the first byte of a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The SDK configuration for the settings: region, credentials, HTTP client, timeouts.
pub async fn sdk_config(settings: &S3Settings) -> Result<aws_config::SdkConfig, Error> {
    let http_client = http_client(settings)?;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.value.clone()))
        .http_client(http_client)
        .timeout_config(timeouts);
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        let token = settings
            .session_token
            .as_ref()
            .map(|token| token.value.expose().to_owned());
        loader = loader.credentials_provider(Credentials::new(
            &id.value,
            secret.value.expose(),
            token,
            None,
            "plx-connections",
        ));
    }
    let base = loader.load().await;
    let mut sts = base.to_builder();
    if let Some(endpoint) = &settings.sts_endpoint_url {
        sts.set_endpoint_url(Some(endpoint.value.clone()));
    }
    let sts = sts.build();
    if let Some(assume) = &settings.assume_role {
        let Some(source) = base.credentials_provider() else {
            return Err(Error::InvalidSetting {
                key: "AWS_ASSUME_ROLE",
                origin: assume.role_arn.source.to_string(),
                message: "no credentials to assume the role with".to_owned(),
            });
        };
        let provider = AssumeRoleProvider::builder(&assume.role_arn.value)
            .session_name(&assume.session_name.value)
            .session_length(assume.duration.value)
            .configure(&sts)
            .build_from_provider(source)
            .await;
        return Ok(base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build());
    }
    if let Some(web) = &settings.web_identity {
        let provider = WebIdentity {
            sts: aws_sdk_sts::Client::new(&sts),
            role_arn: web.role_arn.value.clone(),
            session_name: web.session_name.value.clone(),
            token_file: web.token_file.value.clone(),
        };
        return Ok(base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build());
    }
    Ok(base)
}

/// A configured S3 client for the settings.
pub async fn client(settings: &S3Settings) -> Result<aws_sdk_s3::Client, Error> {
    let sdk_config = sdk_config(settings).await?;
    let mut config = aws_sdk_s3::config::Builder::from(&sdk_config)
        .force_path_style(settings.addressing.value == Addressing::Path);
    if let Some(endpoint) = &settings.endpoint_url {
        config = config.endpoint_url(&endpoint.value);
    }
    if !settings.is_aws() {
        // MinIO, Ceph, Garage and R2 refuse or mangle the checksums newer SDKs send by default.
        config = config
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Ok(aws_sdk_s3::Client::from_conf(config.build()))
}

fn http_client(settings: &S3Settings) -> Result<SharedHttpClient, Error> {
    if !settings.verify_ssl.value {
        tracing::warn!(
            connection = %settings.connection,
            source = %settings.verify_ssl.source,
            "AWS_VERIFY_SSL is false: TLS certificates are NOT verified, anyone on the path can read and change the data; set AWS_CA_BUNDLE instead"
        );
        return Ok(crate::http::client(crate::insecure::tls()));
    }
    // The bundle is checked here whichever connector takes it, so that its errors read alike.
    let mut roots = rustls::RootCertStore::empty();
    let mut pem = None;
    if let Some(ca) = &settings.ca_bundle {
        let bundle = std::fs::read(&ca.value).map_err(|error| Error::Io {
            what: format!("the CA bundle (AWS_CA_BUNDLE from {})", ca.source),
            path: ca.value.clone(),
            error,
        })?;
        let invalid = |message: String| Error::InvalidSetting {
            key: "AWS_CA_BUNDLE",
            origin: ca.source.to_string(),
            message,
        };
        let certificates = CertificateDer::pem_slice_iter(&bundle)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid(format!("{} is not PEM: {error}", ca.value.display())))?;
        if certificates.is_empty() {
            return Err(invalid(format!(
                "{} holds no PEM certificate",
                ca.value.display()
            )));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|error| {
                invalid(format!(
                    "{} holds a certificate that cannot be a trust anchor: {error}",
                    ca.value.display()
                ))
            })?;
        }
        pem = Some(bundle);
    }
    let Some(proxy) = &settings.proxy else {
        roots.add_parsable_certificates(NATIVE_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(crate::http::provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        return Ok(crate::http::client(tls));
    };
    // Behind a proxy, the SDK's own connector: it speaks CONNECT and proxy authentication.
    let mut trust = TrustStore::default();
    if let Some(pem) = pem {
        trust = trust.with_pem_certificate(pem);
    }
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|error| Error::Tls(error.to_string()))?;
    let config = ProxyConfig::all(proxy.value.expose()).map_err(|_| Error::InvalidSetting {
        key: proxy.key,
        origin: proxy.source.to_string(),
        message: "not a proxy URL such as http://proxy:3128".to_owned(),
    })?;
    let proxy = match &settings.no_proxy {
        Some(rules) => config.no_proxy(&rules.value),
        None => config,
    };
    Ok(
        aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |connector_settings, components| {
                let mut builder = Connector::builder()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(tls.clone())
                    .proxy_config(proxy.clone());
                if let Some(connector_settings) = connector_settings {
                    builder = builder.connector_settings(connector_settings.clone());
                }
                if let Some(sleep) = components.and_then(|components| components.sleep_impl()) {
                    builder = builder.sleep_impl(sleep);
                }
                builder.build()
            },
        ),
    )
}

/// The system's trusted roots, read once: reading them takes a while on some systems, and a pod
/// makes a client per connection.
static NATIVE_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        tracing::warn!(
            "no trusted root certificates found on this system; set AWS_CA_BUNDLE for a store over TLS"
        );
    }
    found.certs
});

/// STS AssumeRoleWithWebIdentity with the token read from a file at each refresh (projected
/// service account tokens rotate). The SDK's identity cache calls it again before expiry.
#[derive(Debug)]
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    token_file: PathBuf,
}

impl WebIdentity {
    async fn load(&self) -> provider::Result {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|error| {
                CredentialsError::provider_error(format!(
                    "cannot read the web identity token {}: {error}",
                    self.token_file.display()
                ))
            })?;
        let output = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.trim())
            .send()
            .await
            .map_err(|error| {
                CredentialsError::provider_error(
                    aws_sdk_sts::error::DisplayErrorContext(error).to_string(),
                )
            })?;
        let credentials = output
            .credentials()
            .ok_or_else(|| CredentialsError::provider_error("STS returned no credentials"))?;
        let expiry = SystemTime::try_from(*credentials.expiration()).ok();
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            expiry,
            "WebIdentityToken",
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}
