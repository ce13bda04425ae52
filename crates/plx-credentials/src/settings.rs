//! The S3 settings of a connection, each with where it came from.

use std::{fmt, path::PathBuf, time::Duration};

use plx_connections::{Connection, ConnectionSchema, Kind};
use serde::Serialize;

use crate::{
    Error,
    lookup::{Environment, Found, Lookup, Source},
    secret::Secret,
};

/// A resolved setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
    /// The key it was read under.
    pub key: &'static str,
}

/// How bucket names go into URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `https://endpoint/bucket/key`: what MinIO, Ceph, Garage and most S3-compatible stores want.
    Path,
    /// `https://bucket.endpoint/key`: AWS.
    Virtual,
}

/// STS AssumeRole before talking to S3.
#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRole {
    /// `AWS_ROLE_ARN`.
    pub role_arn: Setting<String>,
    /// `AWS_SESSION_NAME` (default `S3Session`, as Polyaxon).
    pub session_name: Setting<String>,
    /// `AWS_SESSION_DURATION` in seconds (default 43200, as Polyaxon).
    pub duration: Setting<Duration>,
}

/// STS AssumeRoleWithWebIdentity (IRSA and friends) with the token in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct WebIdentity {
    /// `AWS_ROLE_ARN`.
    pub role_arn: Setting<String>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
    pub token_file: Setting<PathBuf>,
    /// `AWS_ROLE_SESSION_NAME` or `AWS_SESSION_NAME`.
    pub session_name: Setting<String>,
}

/// Everything needed to build an S3 client for one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    /// The connection's name.
    pub connection: String,
    /// The bucket, from the connection's schema.
    pub bucket: String,
    /// The key prefix under the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<Setting<String>>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Setting<Secret>>,
    /// `AWS_SECURITY_TOKEN` or `AWS_SESSION_TOKEN`.
    pub session_token: Option<Setting<Secret>>,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub region: Setting<String>,
    /// `AWS_ENDPOINT_URL`, with the scheme `AWS_USE_SSL` asks for.
    pub endpoint_url: Option<Setting<String>>,
    /// `AWS_USE_SSL` (default true).
    pub use_ssl: Setting<bool>,
    /// `AWS_VERIFY_SSL` (default true).
    pub verify_ssl: Setting<bool>,
    /// `AWS_CA_BUNDLE`: a PEM file trusted in addition to the system roots.
    pub ca_bundle: Option<Setting<PathBuf>>,
    /// `AWS_S3_ADDRESSING_STYLE` (`path` or `virtual`); path by default for custom endpoints.
    pub addressing: Setting<Addressing>,
    /// `HTTPS_PROXY` / `HTTP_PROXY`; a secret, as the URL may carry a password.
    pub proxy: Option<Setting<Secret>>,
    /// `NO_PROXY`.
    pub no_proxy: Option<Setting<String>>,
    /// `AWS_ASSUME_ROLE` + `AWS_ROLE_ARN`.
    pub assume_role: Option<AssumeRole>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`.
    pub web_identity: Option<WebIdentity>,
    /// `AWS_STS_ENDPOINT_URL`.
    pub sts_endpoint_url: Option<Setting<String>>,
}

const DEFAULT_REGION: &str = "us-east-1";

impl S3Settings {
    /// Resolves the settings of an s3 connection from its files, its `env` and `env`.
    pub fn resolve(connection: &Connection, env: &Environment) -> Result<S3Settings, Error> {
        let not_s3 = || Error::NotS3 {
            name: connection.name.clone(),
            kind: connection.kind,
        };
        if connection.kind != Kind::S3 {
            return Err(not_s3());
        }
        let Some(ConnectionSchema::Bucket(schema)) = &connection.schema else {
            return Err(not_s3());
        };
        let url = schema
            .bucket
            .strip_prefix("s3://")
            .unwrap_or(&schema.bucket);
        let (bucket, prefix) = url.split_once('/').unwrap_or((url, ""));
        let read = Read(Lookup::new(connection, env));
        let use_ssl = read.flag("AWS_USE_SSL", true)?;
        let verify_ssl = read.flag("AWS_VERIFY_SSL", true)?;
        let region = read
            .text(&["AWS_REGION", "AWS_DEFAULT_REGION"])
            .unwrap_or(Setting {
                value: DEFAULT_REGION.to_owned(),
                source: Source::Default,
                key: "AWS_REGION",
            });
        let endpoint_url = read.endpoint(&use_ssl, &region);
        let addressing = read.addressing(endpoint_url.as_ref())?;
        let role_arn = read.text(&["AWS_ROLE_ARN"]);
        let session_name = read.text(&["AWS_SESSION_NAME", "AWS_ROLE_SESSION_NAME"]);
        let assume_role = read.assume_role(role_arn.as_ref(), session_name.clone())?;
        let web_identity = match (&role_arn, &assume_role) {
            (Some(role_arn), None) => read.web_identity(role_arn, session_name),
            _ => None,
        };
        let (access_key_id, secret_access_key) = read.static_keys()?;
        Ok(S3Settings {
            connection: connection.name.clone(),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            access_key_id,
            secret_access_key,
            session_token: read.secret(&["AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"]),
            region,
            endpoint_url,
            use_ssl,
            verify_ssl,
            ca_bundle: read.ca_bundle(),
            addressing,
            proxy: read.secret(&["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]),
            no_proxy: read.text(&["NO_PROXY", "no_proxy"]),
            assume_role,
            web_identity,
            sts_endpoint_url: read.text(&["AWS_STS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"]),
        })
    }

    /// Whether the endpoint is AWS itself (not MinIO, Ceph, Garage, R2, ...).
    pub fn is_aws(&self) -> bool {
        self.endpoint_url
            .as_ref()
            .is_none_or(|endpoint| host_of(&endpoint.value).ends_with(".amazonaws.com"))
    }

    /// How credentials are obtained, in a few words.
    pub fn credentials_kind(&self) -> &'static str {
        match (&self.assume_role, &self.web_identity, &self.access_key_id) {
            (Some(_), _, Some(_)) => "static keys, then STS AssumeRole",
            (Some(_), _, None) => "default chain, then STS AssumeRole",
            (None, Some(_), _) => "STS AssumeRoleWithWebIdentity",
            (None, None, Some(_)) => "static keys",
            (None, None, None) => {
                "default chain (web identity, profile, container or instance metadata)"
            }
        }
    }

    /// Where each setting came from, secret values redacted.
    pub fn report(&self) -> Report {
        let mut lines = Vec::new();
        let mut add = |key: &str, value: String, source: &Source| {
            lines.push(ReportLine {
                key: key.to_owned(),
                value,
                source: source.to_string(),
            })
        };
        add(
            "bucket",
            format!("s3://{}/{}", self.bucket, self.prefix),
            &Source::Schema,
        );
        if let Some(setting) = &self.access_key_id {
            add(setting.key, setting.value.clone(), &setting.source);
        }
        for setting in [&self.secret_access_key, &self.session_token]
            .into_iter()
            .flatten()
        {
            add(setting.key, setting.value.to_string(), &setting.source);
        }
        add(
            self.region.key,
            self.region.value.clone(),
            &self.region.source,
        );
        if let Some(setting) = &self.endpoint_url {
            add(setting.key, setting.value.clone(), &setting.source);
        }
        for setting in [&self.use_ssl, &self.verify_ssl] {
            add(setting.key, setting.value.to_string(), &setting.source);
        }
        if let Some(setting) = &self.ca_bundle {
            add(
                setting.key,
                setting.value.display().to_string(),
                &setting.source,
            );
        }
        add(
            self.addressing.key,
            format!("{:?}", self.addressing.value).to_lowercase(),
            &self.addressing.source,
        );
        if let Some(setting) = &self.proxy {
            add(
                setting.key,
                redact_url(setting.value.expose()),
                &setting.source,
            );
        }
        for setting in [&self.no_proxy, &self.sts_endpoint_url]
            .into_iter()
            .flatten()
        {
            add(setting.key, setting.value.clone(), &setting.source);
        }
        if let Some(assume) = &self.assume_role {
            add(
                assume.role_arn.key,
                assume.role_arn.value.clone(),
                &assume.role_arn.source,
            );
            add(
                assume.session_name.key,
                assume.session_name.value.clone(),
                &assume.session_name.source,
            );
            add(
                assume.duration.key,
                assume.duration.value.as_secs().to_string(),
                &assume.duration.source,
            );
        }
        if let Some(web) = &self.web_identity {
            add(
                web.role_arn.key,
                web.role_arn.value.clone(),
                &web.role_arn.source,
            );
            add(
                web.token_file.key,
                web.token_file.value.display().to_string(),
                &web.token_file.source,
            );
        }
        Report {
            connection: self.connection.clone(),
            credentials: self.credentials_kind().to_owned(),
            lines,
        }
    }
}

/// Where each setting of a connection came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The connection.
    pub connection: String,
    /// How credentials are obtained.
    pub credentials: String,
    /// One line per setting that is set.
    pub lines: Vec<ReportLine>,
}

/// One setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    /// The key, e.g. `AWS_REGION`.
    pub key: String,
    /// The value, `<redacted>` for secrets.
    pub value: String,
    /// Where it came from, e.g. `env AWS_REGION` or `file /plx-context/secrets/s3/AWS_SECRET_ACCESS_KEY`.
    pub source: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connection {}: credentials from {}",
            self.connection, self.credentials
        )?;
        let width = self
            .lines
            .iter()
            .map(|line| line.key.len())
            .max()
            .unwrap_or(0);
        for line in &self.lines {
            writeln!(
                f,
                "  {:width$}  {}  ({})",
                line.key, line.value, line.source
            )?;
        }
        Ok(())
    }
}

/// The settings of one connection, each read from the first place that has it.
struct Read<'a>(Lookup<'a>);

/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, both or neither.
type StaticKeys = (Option<Setting<String>>, Option<Setting<Secret>>);

impl Read<'_> {
    fn text(&self, keys: &[&'static str]) -> Option<Setting<String>> {
        self.0.first(keys).map(|(key, found)| setting(key, found))
    }

    fn secret(&self, keys: &[&'static str]) -> Option<Setting<Secret>> {
        self.0.first(keys).map(|(key, found)| Setting {
            value: Secret::new(found.value),
            source: found.source,
            key,
        })
    }

    fn flag(&self, key: &'static str, default: bool) -> Result<Setting<bool>, Error> {
        Ok(match self.0.get(key) {
            Some(found) => Setting {
                value: parse_bool(key, &found)?,
                source: found.source,
                key,
            },
            None => Setting {
                value: default,
                source: Source::Default,
                key,
            },
        })
    }

    /// `AWS_ENDPOINT_URL` with its scheme from `AWS_USE_SSL`; without one, `AWS_USE_SSL=false`
    /// still means plain HTTP to AWS.
    fn endpoint(
        &self,
        use_ssl: &Setting<bool>,
        region: &Setting<String>,
    ) -> Option<Setting<String>> {
        let endpoint =
            self.text(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
                .map(|mut endpoint| {
                    endpoint.value = with_scheme(&endpoint.value, use_ssl.value);
                    endpoint
                });
        endpoint.or_else(|| {
            (!use_ssl.value).then(|| Setting {
                value: format!("http://s3.{}.amazonaws.com", region.value),
                source: use_ssl.source.clone(),
                key: "AWS_USE_SSL",
            })
        })
    }

    fn addressing(&self, endpoint: Option<&Setting<String>>) -> Result<Setting<Addressing>, Error> {
        let key = "AWS_S3_ADDRESSING_STYLE";
        let Some(found) = self.0.get(key) else {
            return Ok(Setting {
                value: default_addressing(endpoint),
                source: Source::Default,
                key,
            });
        };
        let value = match found.value.to_ascii_lowercase().as_str() {
            "path" => Addressing::Path,
            "virtual" => Addressing::Virtual,
            "auto" => default_addressing(endpoint),
            other => {
                return Err(Error::InvalidSetting {
                    key,
                    origin: found.source.to_string(),
                    message: format!(
                        "`{other}` is not an addressing style; use path, virtual or auto"
                    ),
                });
            }
        };
        Ok(Setting {
            value,
            source: found.source,
            key,
        })
    }

    fn ca_bundle(&self) -> Option<Setting<PathBuf>> {
        self.0.get("AWS_CA_BUNDLE").map(|found| Setting {
            value: ca_path(&found.value, &self.0.mount_paths()),
            source: found.source,
            key: "AWS_CA_BUNDLE",
        })
    }

    /// The role to assume with the static keys, when `AWS_ASSUME_ROLE` asks for one.
    fn assume_role(
        &self,
        role_arn: Option<&Setting<String>>,
        session_name: Option<Setting<String>>,
    ) -> Result<Option<AssumeRole>, Error> {
        let assume = self.flag("AWS_ASSUME_ROLE", false)?;
        match (role_arn, assume.value) {
            (Some(role_arn), true) => Ok(Some(AssumeRole {
                role_arn: role_arn.clone(),
                session_name: session_name.unwrap_or(Setting {
                    value: "S3Session".to_owned(),
                    source: Source::Default,
                    key: "AWS_SESSION_NAME",
                }),
                duration: self.session_duration()?,
            })),
            (None, true) => Err(Error::InvalidSetting {
                key: "AWS_ASSUME_ROLE",
                origin: assume.source.to_string(),
                message: "AWS_ASSUME_ROLE is set but AWS_ROLE_ARN is not; give the role to assume"
                    .to_owned(),
            }),
            _ => Ok(None),
        }
    }

    fn session_duration(&self) -> Result<Setting<Duration>, Error> {
        let key = "AWS_SESSION_DURATION";
        let Some(found) = self.0.get(key) else {
            return Ok(Setting {
                value: Duration::from_secs(43200),
                source: Source::Default,
                key,
            });
        };
        let seconds: u64 = found
            .value
            .trim()
            .parse()
            .map_err(|_| Error::InvalidSetting {
                key,
                origin: found.source.to_string(),
                message: format!("`{}` is not a number of seconds", found.value),
            })?;
        Ok(Setting {
            value: Duration::from_secs(seconds),
            source: found.source,
            key,
        })
    }

    /// A web identity (a projected service-account token) for the role, where the pod has one.
    fn web_identity(
        &self,
        role_arn: &Setting<String>,
        session_name: Option<Setting<String>>,
    ) -> Option<WebIdentity> {
        let token_file = self.0.get("AWS_WEB_IDENTITY_TOKEN_FILE")?;
        Some(WebIdentity {
            role_arn: role_arn.clone(),
            token_file: Setting {
                value: PathBuf::from(&token_file.value),
                source: token_file.source,
                key: "AWS_WEB_IDENTITY_TOKEN_FILE",
            },
            session_name: session_name.unwrap_or(Setting {
                value: "plx-init".to_owned(),
                source: Source::Default,
                key: "AWS_ROLE_SESSION_NAME",
            }),
        })
    }

    /// The static keys: both, or neither (the default credential chain).
    fn static_keys(&self) -> Result<StaticKeys, Error> {
        let access_key_id = self.text(&["AWS_ACCESS_KEY_ID"]);
        let secret_access_key = self.secret(&["AWS_SECRET_ACCESS_KEY"]);
        if access_key_id.is_some() != secret_access_key.is_some() {
            let (have, missing) = if access_key_id.is_some() {
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            } else {
                ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            };
            return Err(Error::InvalidSetting {
                key: missing,
                origin: "nowhere".to_owned(),
                message: format!(
                    "{have} is set but {missing} is not; give both, or neither to use the default credential chain"
                ),
            });
        }
        Ok((access_key_id, secret_access_key))
    }
}

fn setting(key: &'static str, found: Found) -> Setting<String> {
    Setting {
        value: found.value,
        source: found.source,
        key,
    }
}

fn parse_bool(key: &'static str, found: &Found) -> Result<bool, Error> {
    match found.value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(Error::InvalidSetting {
            key,
            origin: found.source.to_string(),
            message: format!("`{other}` is not true or false"),
        }),
    }
}

fn with_scheme(endpoint: &str, use_ssl: bool) -> String {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(endpoint);
    let scheme = if use_ssl { "https" } else { "http" };
    // An explicit http:// stays http: Polyaxon (botocore) honours the URL's scheme.
    if endpoint.starts_with("http://") {
        return endpoint.trim_end_matches('/').to_owned();
    }
    format!("{scheme}://{}", rest.trim_end_matches('/'))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    authority.split(':').next().unwrap_or(authority)
}

fn default_addressing(endpoint: Option<&Setting<String>>) -> Addressing {
    match endpoint {
        Some(endpoint) if !host_of(&endpoint.value).ends_with(".amazonaws.com") => Addressing::Path,
        _ => Addressing::Virtual,
    }
}

/// A relative CA bundle names a file in the connection's mounted secret or config map.
fn ca_path(value: &str, mounts: &[PathBuf]) -> PathBuf {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        return path;
    }
    mounts
        .iter()
        .map(|mount| mount.join(&path))
        .find(|candidate| candidate.exists())
        .unwrap_or(path)
}

/// Proxy URLs may carry a password.
fn redact_url(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host)))
    {
        Some((scheme, host)) => format!("{scheme}://<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(yaml: &str) -> Connection {
        let report = plx_connections::validate(yaml, &[]);
        report
            .catalog()
            .and_then(|catalog| catalog.connections.first().cloned())
            .unwrap_or_else(|| panic!("{:?}", report.diagnostics))
    }

    const S3: &str = "{name: data, kind: s3, schema: {bucket: 's3://bucket/some/prefix/'}, secret: {name: s3-secret}}";

    #[test]
    fn bucket_and_prefix() {
        let settings =
            S3Settings::resolve(&connection(S3), &Environment::default()).expect("resolves");
        assert_eq!(
            (settings.bucket.as_str(), settings.prefix.as_str()),
            ("bucket", "some/prefix")
        );
        assert_eq!(
            settings.credentials_kind(),
            "default chain (web identity, profile, container or instance metadata)"
        );
        assert!(settings.is_aws());
        assert_eq!(settings.addressing.value, Addressing::Virtual);
        assert_eq!(settings.region.source, Source::Default);
    }

    #[test]
    fn precedence_connection_env_over_process_env_over_polyaxon_prefix() {
        let env = Environment::from_pairs([
            ("AWS_REGION", "eu-west-1"),
            ("POLYAXON_AWS_REGION", "ap-south-1"),
            ("POLYAXON_AWS_ENDPOINT_URL", "minio:9000"),
        ]);
        let conn = connection(
            "{name: data, kind: s3, schema: {bucket: 's3://bucket'}, env: {AWS_REGION: us-west-2}}",
        );
        let settings = S3Settings::resolve(&conn, &env).expect("resolves");
        assert_eq!(settings.region.value, "us-west-2");
        assert_eq!(settings.region.source, Source::ConnectionEnv);
        let endpoint = settings.endpoint_url.expect("endpoint");
        assert_eq!(endpoint.value, "https://minio:9000");
        assert_eq!(
            endpoint.source,
            Source::Env("POLYAXON_AWS_ENDPOINT_URL".to_owned())
        );
        assert_eq!(settings.addressing.value, Addressing::Path);
        let settings = S3Settings::resolve(&connection(S3), &env).expect("resolves");
        assert_eq!(settings.region.source, Source::Env("AWS_REGION".to_owned()));
    }

    #[test]
    fn secret_files_win_and_are_trimmed() {
        let dir = std::env::temp_dir().join(format!("plx-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("AWS_ACCESS_KEY_ID"), "FILEKEY\n").expect("write");
        std::fs::write(dir.join("AWS_SECRET_ACCESS_KEY"), "filesecret\n").expect("write");
        let conn = connection(&format!(
            "{{name: data, kind: s3, schema: {{bucket: 's3://bucket'}}, secret: {{name: s, mountPath: '{}'}}}}",
            dir.display()
        ));
        let env = Environment::from_pairs([
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
        ]);
        let settings = S3Settings::resolve(&conn, &env).expect("resolves");
        let key = settings.access_key_id.expect("key");
        assert_eq!(key.value, "FILEKEY");
        assert_eq!(
            key.source,
            Source::SecretFile(dir.join("AWS_ACCESS_KEY_ID"))
        );
        assert_eq!(
            settings.secret_access_key.expect("secret").value.expose(),
            "filesecret"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_and_errors() {
        let conn = connection(S3);
        let resolve = |pairs: &[(&str, &str)]| {
            S3Settings::resolve(&conn, &Environment::from_pairs(pairs.iter().copied()))
        };
        let settings = resolve(&[
            ("AWS_USE_SSL", "false"),
            ("AWS_ENDPOINT_URL", "https://minio:9000"),
        ])
        .expect("resolves");
        assert_eq!(
            settings.endpoint_url.expect("endpoint").value,
            "http://minio:9000"
        );
        let settings = resolve(&[("AWS_USE_SSL", "False")]).expect("resolves");
        assert_eq!(
            settings.endpoint_url.expect("endpoint").value,
            "http://s3.us-east-1.amazonaws.com"
        );
        assert!(matches!(
            resolve(&[("AWS_VERIFY_SSL", "maybe")]),
            Err(Error::InvalidSetting {
                key: "AWS_VERIFY_SSL",
                ..
            })
        ));
        assert!(matches!(
            resolve(&[("AWS_ACCESS_KEY_ID", "x")]),
            Err(Error::InvalidSetting {
                key: "AWS_SECRET_ACCESS_KEY",
                ..
            })
        ));
        assert!(matches!(
            resolve(&[("AWS_ASSUME_ROLE", "true")]),
            Err(Error::InvalidSetting {
                key: "AWS_ASSUME_ROLE",
                ..
            })
        ));
        let settings = resolve(&[("AWS_SESSION_TOKEN", "t")]).expect("resolves");
        assert_eq!(
            settings.session_token.expect("token").key,
            "AWS_SESSION_TOKEN"
        );
        let settings =
            resolve(&[("AWS_SECURITY_TOKEN", "a"), ("AWS_SESSION_TOKEN", "b")]).expect("resolves");
        assert_eq!(settings.session_token.expect("token").value.expose(), "a");
        let settings = resolve(&[("AWS_DEFAULT_REGION", "eu-north-1")]).expect("resolves");
        assert_eq!(settings.region.value, "eu-north-1");
        let settings = resolve(&[
            ("AWS_ASSUME_ROLE", "true"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ])
        .expect("resolves");
        let assume = settings.assume_role.expect("assume");
        assert_eq!(
            (
                assume.session_name.value.as_str(),
                assume.duration.value.as_secs()
            ),
            ("S3Session", 43200)
        );
        let settings = resolve(&[
            ("AWS_S3_ADDRESSING_STYLE", "virtual"),
            ("AWS_ENDPOINT_URL", "http://minio:9000"),
        ])
        .expect("resolves");
        assert_eq!(settings.addressing.value, Addressing::Virtual);
    }

    #[test]
    fn report_redacts_secrets() {
        let conn = connection(S3);
        let env = Environment::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ("AWS_SESSION_TOKEN", "t0ken-value"),
            ("HTTPS_PROXY", "http://user:pw@proxy:3128"),
        ]);
        let settings = S3Settings::resolve(&conn, &env).expect("resolves");
        let text = format!(
            "{}{settings:?}{}",
            settings.report(),
            serde_json::to_string(&settings.report()).unwrap_or_default()
        );
        for secret in ["s3cr3t-value", "t0ken-value", "user:pw"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let report = settings.report();
        let line = report
            .lines
            .iter()
            .find(|line| line.key == "AWS_SECRET_ACCESS_KEY")
            .expect("reported");
        assert_eq!(
            (line.value.as_str(), line.source.as_str()),
            ("<redacted>", "env AWS_SECRET_ACCESS_KEY")
        );
        let proxy = report
            .lines
            .iter()
            .find(|line| line.key == "HTTPS_PROXY")
            .expect("reported");
        assert_eq!(proxy.value, "http://<redacted>@proxy:3128");
    }
}
