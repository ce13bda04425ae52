//! Shared by the webhook tests: certificates, a server on a free port, an HTTPS client, and
//! AdmissionReview bodies shaped as the API server sends them.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use plx_testkit::Pki;
use plx_webhook::{Keys, server};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A webhook serving on 127.0.0.1 with certificates in a temporary directory.
pub struct Webhook {
    pub port: u16,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub struct Options {
    pub keys: Option<Arc<dyn Keys>>,
    pub strict: bool,
    pub max_body: usize,
    pub budget: Duration,
    pub ready: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keys: None,
            strict: false,
            max_body: 4 * 1024 * 1024,
            budget: Duration::from_secs(2),
            ready: true,
        }
    }
}

impl Webhook {
    pub async fn start(options: Options) -> anyhow::Result<Webhook> {
        let pki = Pki::new(&["localhost", "127.0.0.1"])?;
        let dir = tempfile::tempdir()?;
        pki.write(dir.path())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let settings = server::Settings {
            addr: listener.local_addr()?,
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            reload_every: Duration::from_millis(100),
            max_body: options.max_body,
            budget: options.budget,
            strict: options.strict,
        };
        let shared = server::Shared::new(
            options.keys,
            Arc::new(AtomicBool::new(options.ready)),
            options.budget,
            options.strict,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(settings, shared, listener, async move {
            let _ = stopped.await;
        }));
        Ok(Webhook {
            port,
            pki,
            dir,
            stop: Some(stop),
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn client(&self) -> Https {
        https(&self.pki.ca_pem)
    }

    pub async fn review(&self, review: &Value) -> (u16, Value) {
        let (status, body) = self
            .client()
            .post(
                &self.url("/validate"),
                "application/json",
                review.to_string().into_bytes(),
            )
            .await
            .expect("the webhook answers");
        (
            status,
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        )
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
        self.task.abort();
    }
}

/// An HTTPS client trusting only `ca_pem`.
pub struct Https {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

/// A TLS client configuration trusting only the certificates in `ca_pem`.
pub fn trusting(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A TLS connection to 127.0.0.1:`port` trusting only `ca_pem`, checking the certificate
/// against `server_name`.
pub async fn tls_connect(
    ca_pem: &[u8],
    port: u16,
    server_name: &str,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(trusting(ca_pem)?));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    Ok(connector
        .connect(
            rustls::pki_types::ServerName::try_from(server_name.to_owned())?,
            stream,
        )
        .await?)
}

pub fn https(ca_pem: &str) -> Https {
    let config = trusting(ca_pem.as_bytes()).expect("a CA certificate");
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Https {
        client: Client::builder(TokioExecutor::new()).build(connector),
    }
}

impl Https {
    pub async fn get(&self, url: &str) -> anyhow::Result<(u16, String)> {
        let response = self.client.get(url.parse()?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = hyper::Request::post(url)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body.to_vec()))
    }
}

/// A ConfigMap as `kubectl create configmap --dry-run=client -o json` makes it.
pub fn kubectl_configmap(name: &str, literals: &[(&str, &str)]) -> Value {
    let mut command = std::process::Command::new("kubectl");
    command.args([
        "create",
        "configmap",
        name,
        "--namespace",
        "polyaxon",
        "--dry-run=client",
        "-o",
        "json",
    ]);
    for (key, value) in literals {
        command.arg(format!("--from-literal={key}={value}"));
    }
    let output = command.output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}

/// The AdmissionReview v1 the API server sends for `object`.
pub fn admission_review(uid: &str, object: &Value, operation: &str, dry_run: bool) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Pod" => "pods",
        _ => "unknown",
    };
    let gvk = json!({"group": "", "version": "v1", "kind": kind});
    let gvr = json!({"group": "", "version": "v1", "resource": resource});
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": "polyaxon",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": object,
            "oldObject": if operation == "UPDATE" { object.clone() } else { Value::Null },
            "dryRun": dry_run,
            "options": {"kind": if operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" }, "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}
        }
    })
}
