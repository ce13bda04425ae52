//! `S3Server::start().await`: a real S3 server in a container, and a client for it.

use std::{process::Command, time::Duration};

use anyhow::{Context, bail};
use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    },
    primitives::ByteStream,
};
use testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    core::{ContainerPort, ExecCommand, WaitFor},
    runners::AsyncRunner,
};

/// The images `cargo xtask images` builds.
pub const S3S_IMAGE: (&str, &str) = ("plx-test/s3s-fs", "0.14.1");
/// Garage, built only when asked (`cargo xtask images --garage`).
pub const GARAGE_IMAGE: (&str, &str) = ("plx-test/garage", "2.5.0");
/// The official MinIO image, where it can be had.
pub const MINIO_IMAGE: (&str, &str) = ("minio/minio", "latest");

/// Which S3 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The official MinIO image.
    Minio,
    /// s3s-fs, built here.
    S3s,
    /// Garage, built here on request.
    Garage,
}

impl Backend {
    fn image(self) -> (&'static str, &'static str) {
        match self {
            Backend::Minio => MINIO_IMAGE,
            Backend::S3s => S3S_IMAGE,
            Backend::Garage => GARAGE_IMAGE,
        }
    }

    /// The backend `PLX_TEST_S3` names, or the first whose image is present.
    pub fn chosen() -> anyhow::Result<Backend> {
        match std::env::var("PLX_TEST_S3").ok().as_deref() {
            Some("minio") => return Ok(Backend::Minio),
            Some("s3s") => return Ok(Backend::S3s),
            Some("garage") => return Ok(Backend::Garage),
            Some(other) if !other.is_empty() => {
                bail!("PLX_TEST_S3={other}: use minio, s3s or garage")
            }
            _ => {}
        }
        for backend in [Backend::Minio, Backend::S3s, Backend::Garage] {
            if image_present(backend.image()) {
                return Ok(backend);
            }
        }
        bail!(
            "no S3 server image on this machine: run `cargo xtask images` (it builds {}:{})",
            S3S_IMAGE.0,
            S3S_IMAGE.1
        )
    }
}

fn image_present((name, tag): (&str, &str)) -> bool {
    Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{name}:{tag}"),
        ])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A running S3 server. Dropping it removes the container.
pub struct S3Server {
    container: ContainerAsync<GenericImage>,
    /// Which server it is.
    pub backend: Backend,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The port inside the container.
    internal_port: u16,
    /// The region the server answers for.
    pub region: String,
    /// The access key.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// A client with the right keys.
    pub client: Client,
}

const ACCESS_KEY: &str = "plxtestaccesskey";
/// Garage only takes its own key format: `GK` and 24 hex digits, and a 64-hex-digit secret.
const GARAGE_ACCESS_KEY: &str = "GK0123456789abcdef01234567";

impl S3Server {
    /// Starts the chosen backend and waits until it answers S3 requests.
    pub async fn start() -> anyhow::Result<S3Server> {
        S3Server::start_backend(Backend::chosen()?).await
    }

    /// Starts a given backend.
    pub async fn start_backend(backend: Backend) -> anyhow::Result<S3Server> {
        S3Server::start_with(backend, None).await
    }

    /// Starts a given backend keeping its data in `data` on this machine, not in the
    /// container's layered filesystem (fuse-overlayfs here, a few dozen small files a second):
    /// for benchmarks and other large workloads.
    pub async fn start_with(
        backend: Backend,
        data: Option<&std::path::Path>,
    ) -> anyhow::Result<S3Server> {
        // A fresh secret per server, so no test can pass on keys it was not given.
        let (access_key, secret_key) = match backend {
            Backend::Garage => (
                GARAGE_ACCESS_KEY,
                format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    rand_u64(),
                    rand_u64(),
                    rand_u64(),
                    rand_u64()
                ),
            ),
            _ => (ACCESS_KEY, format!("plx-secret-{:016x}", rand_u64())),
        };
        let (name, tag) = backend.image();
        let port = match backend {
            Backend::Minio => 9000,
            Backend::S3s => 8014,
            Backend::Garage => 3900,
        };
        let image = GenericImage::new(name, tag)
            .with_exposed_port(ContainerPort::Tcp(port))
            .with_wait_for(WaitFor::Nothing);
        let request = image
            .with_label(crate::LABEL, "1")
            .with_startup_timeout(Duration::from_secs(60));
        let request = match backend {
            Backend::Minio => request
                .with_env_var("MINIO_ROOT_USER", access_key)
                .with_env_var("MINIO_ROOT_PASSWORD", &secret_key)
                .with_cmd(["server", "/data"]),
            Backend::S3s => request.with_cmd([
                "--host",
                "0.0.0.0",
                "--port",
                "8014",
                "--access-key",
                access_key,
                "--secret-key",
                &secret_key,
                "/data",
            ]),
            Backend::Garage => request,
        };
        let request = match data {
            Some(data) => {
                // The servers run as nobody: their directories must be writable by anyone.
                let dirs: &[&str] = match backend {
                    Backend::Garage => &["meta", "blocks"],
                    _ => &[""],
                };
                for dir in dirs {
                    let path = data.join(dir);
                    std::fs::create_dir_all(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(0o777),
                    )?;
                }
                let data = data
                    .canonicalize()
                    .with_context(|| format!("cannot resolve {}", data.display()))?;
                request.with_mount(testcontainers::core::Mount::bind_mount(
                    data.display().to_string(),
                    "/data",
                ))
            }
            None => request,
        };
        let container = request
            .start()
            .await
            .with_context(|| format!("cannot start {name}:{tag}"))?;
        if backend == Backend::Garage {
            garage_bootstrap(&container, access_key, &secret_key).await?;
        }
        let host_port = container
            .get_host_port_ipv4(ContainerPort::Tcp(port))
            .await?;
        let endpoint = format!("http://127.0.0.1:{host_port}");
        let region = "us-east-1".to_owned();
        let client = client_for(&endpoint, &region, access_key, &secret_key);
        let server = S3Server {
            container,
            backend,
            endpoint,
            port: host_port,
            internal_port: port,
            region,
            access_key: access_key.to_owned(),
            secret_key,
            client,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.list_buckets().send().await {
                Ok(_) => return Ok(()),
                Err(error) if tokio::time::Instant::now() > deadline => {
                    bail!(
                        "{:?} did not answer S3 requests within 30 s: {}",
                        self.backend,
                        aws_sdk_s3::error::DisplayErrorContext(error)
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        create_bucket(&self.client, bucket).await
    }

    /// Writes one object.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Vec<u8>>,
    ) -> anyhow::Result<()> {
        put(&self.client, bucket, key, body).await
    }

    /// Writes several objects.
    pub async fn seed(&self, bucket: &str, objects: &[(&str, &[u8])]) -> anyhow::Result<()> {
        for (key, body) in objects {
            self.put(bucket, key, body.to_vec()).await?;
        }
        Ok(())
    }

    /// Kills the server (no grace period), keeping its data.
    pub async fn kill(&self) -> anyhow::Result<()> {
        self.container.stop_with_timeout(Some(0)).await?;
        Ok(())
    }

    /// Starts a killed server again and waits until it answers; its port may have changed.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.container.start().await?;
        let port = match self.backend {
            Backend::Minio => 9000,
            Backend::S3s => 8014,
            Backend::Garage => 3900,
        };
        self.port = self
            .container
            .get_host_port_ipv4(ContainerPort::Tcp(port))
            .await?;
        self.endpoint = format!("http://127.0.0.1:{}", self.port);
        self.client = client_for(
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
        );
        self.wait_ready().await
    }

    /// The container's id, for `docker` commands in tests.
    pub fn container_id(&self) -> &str {
        self.container.id()
    }

    /// The endpoint other containers on Docker's default bridge network reach it at, as pods
    /// reach a store by its Service address.
    pub async fn bridge_endpoint(&self) -> anyhow::Result<String> {
        let output = tokio::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.NetworkSettings.IPAddress}}",
                self.container.id(),
            ])
            .output()
            .await?;
        let ip = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || ip.is_empty() {
            bail!(
                "no bridge address for {}: {}",
                self.container.id(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(format!("http://{ip}:{}", self.internal_port))
    }
}

/// A fresh Garage node has no storage layout and no keys: give it both.
async fn garage_bootstrap(
    container: &ContainerAsync<GenericImage>,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<()> {
    let garage = |args: &[&str]| {
        let mut command = vec!["/bin/garage", "-c", "/etc/garage.toml"];
        command.extend_from_slice(args);
        ExecCommand::new(command.into_iter().map(str::to_owned).collect::<Vec<_>>())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let node = loop {
        let mut result = container.exec(garage(&["node", "id", "-q"])).await?;
        let out = String::from_utf8_lossy(&result.stdout_to_vec().await?)
            .trim()
            .to_owned();
        if let Some((id, _)) = out.split_once('@') {
            break id.to_owned();
        }
        if tokio::time::Instant::now() > deadline {
            bail!("garage did not report its node id: {out}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for args in [
        vec!["layout", "assign", "-z", "dc1", "-c", "1G", &node],
        vec!["layout", "apply", "--version", "1"],
        vec![
            "key", "import", "--yes", "-n", "plx-test", access_key, secret_key,
        ],
        vec!["key", "allow", "--create-bucket", access_key],
    ] {
        let mut result = container.exec(garage(&args)).await?;
        let out = result.stdout_to_vec().await?;
        if result.exit_code().await? != Some(0) {
            bail!(
                "garage {} failed: {}",
                args[..2].join(" "),
                String::from_utf8_lossy(&out)
            );
        }
    }
    Ok(())
}

/// Creates a bucket with any client (moto's too).
pub async fn create_bucket(client: &Client, bucket: &str) -> anyhow::Result<()> {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|error| {
            anyhow::format_err!(
                "create bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(error)
            )
        })?;
    Ok(())
}

/// Turns versioning on for `bucket` (moto keeps versions; s3s-fs does not).
pub async fn enable_versioning(client: &Client, bucket: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|error| {
            anyhow::format_err!(
                "versioning on {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(error)
            )
        })?;
    Ok(())
}

/// Writes one object with any client.
pub async fn put(
    client: &Client,
    bucket: &str,
    key: &str,
    body: impl Into<Vec<u8>>,
) -> anyhow::Result<()> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .map_err(|error| {
            anyhow::format_err!(
                "put {bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(error)
            )
        })?;
    Ok(())
}

/// Reads one object whole with any client.
pub async fn get(client: &Client, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| {
            anyhow::format_err!(
                "get {bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(error)
            )
        })?;
    Ok(output.body.collect().await?.into_bytes().to_vec())
}

/// A path-style client for a test endpoint.
pub fn client_for(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "plx-testkit",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
