//! An S3 server inside the calling process: the `s3s-fs` library (the same code as the
//! `plx-test/s3s-fs` image) on a free loopback port, for the demo and for tests that need no
//! container. It serves until dropped.

use std::path::Path;

use aws_sdk_s3::Client;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use s3s::{auth::SimpleAuth, service::S3ServiceBuilder};
use tokio::{net::TcpListener, task::JoinHandle};

/// A running in-process server.
pub struct Embedded {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The access key it accepts.
    pub access_key: String,
    /// The secret key it accepts.
    pub secret_key: String,
    /// A client for it, path-style.
    pub client: Client,
    task: JoinHandle<()>,
}

impl Embedded {
    /// Serves the buckets under `root` (one directory per bucket) on a free port.
    pub async fn start(root: &Path) -> anyhow::Result<Embedded> {
        let (access_key, secret_key) = ("plx-demo".to_owned(), "plx-demo-secret".to_owned());
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|error| anyhow::format_err!("s3s-fs at {}: {error:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let service = builder.build();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let http = Builder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        let client = crate::s3::client_for(&endpoint, "us-east-1", &access_key, &secret_key);
        Ok(Embedded {
            endpoint,
            access_key,
            secret_key,
            client,
            task,
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.task.abort();
    }
}
