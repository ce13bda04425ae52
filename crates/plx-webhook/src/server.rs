//! HTTPS: the review endpoint, health, readiness and metrics, a certificate that is reloaded
//! when its files change, a body limit, a time budget per review, and a graceful shutdown.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Keys, review};

/// How the server runs.
#[derive(Clone)]
pub struct Settings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The serving certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// How often the certificate files are checked for a change.
    pub reload_every: Duration,
    /// The longest body accepted.
    pub max_body: usize,
    /// The time one review may take before it is refused.
    pub budget: Duration,
    /// Cross-object problems are errors.
    pub strict: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    verdict: &'static str,
}

struct Metrics {
    registry: Registry,
    requests: Family<Verdict, Counter>,
    latency: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("plx_webhook");
        let requests = Family::<Verdict, Counter>::default();
        let latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        registry.register(
            "requests",
            "Admission reviews answered, by verdict (allowed, denied, malformed, timeout)",
            requests.clone(),
        );
        registry.register(
            "review_seconds",
            "Time to answer one admission review",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Shared {
    keys: Option<Arc<dyn Keys>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    budget: Duration,
    strict: bool,
}

impl Shared {
    /// `ready` turns true once the cache (if any) has synced.
    pub fn new(
        keys: Option<Arc<dyn Keys>>,
        ready: Arc<AtomicBool>,
        budget: Duration,
        strict: bool,
    ) -> Shared {
        Shared {
            keys,
            ready,
            metrics: Arc::new(Metrics::new()),
            budget,
            strict,
        }
    }
}

/// The routes, without TLS (tests and `review` use them directly).
pub fn router(shared: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

async fn readyz(State(shared): State<Shared>) -> Response {
    if shared.ready.load(Ordering::Relaxed) {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the Secret and ConfigMap cache has not synced yet",
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &shared.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn validate(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let count = |verdict: &'static str| {
        shared
            .metrics
            .requests
            .get_or_create(&Verdict { verdict })
            .inc();
        shared
            .metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|mime| mime.trim() == "application/json")
        });
    if !json {
        count("malformed");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json\n",
        )
            .into_response();
    }
    let keys = shared.keys.clone();
    let strict = shared.strict;
    // The check runs on a blocking thread so that a slow catalog cannot stall other requests,
    // and is abandoned (the request refused) when it overruns the budget.
    let work = tokio::task::spawn_blocking(move || {
        review::answer(
            &body,
            review::Policy {
                keys: keys.as_deref(),
                strict,
            },
        )
    });
    match tokio::time::timeout(shared.budget, work).await {
        Ok(Ok(Ok(review::Answer { review, allowed }))) => {
            count(if allowed { "allowed" } else { "denied" });
            axum::Json(review).into_response()
        }
        Ok(Ok(Err(reject))) => {
            count("malformed");
            (StatusCode::BAD_REQUEST, format!("{reject}\n")).into_response()
        }
        Ok(Err(_)) => {
            count("malformed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the review failed\n").into_response()
        }
        Err(_) => {
            count("timeout");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the review took longer than {:?}; refused\n", shared.budget),
            )
                .into_response()
        }
    }
}

/// The serving certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct Reloading {
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
    cert: PathBuf,
    key: PathBuf,
}

impl Reloading {
    /// Loads the files once; fails when they do not hold a certificate and its key.
    pub fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Arc<Reloading>> {
        let (bytes, certified) = read_pair(&cert, &key)?;
        Ok(Arc::new(Reloading {
            current: RwLock::new((bytes, certified)),
            cert,
            key,
        }))
    }

    /// Rereads the files; true when the certificate changed. A broken pair keeps the old one.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let (bytes, certified) = read_pair(&self.cert, &self.key)?;
        let mut current = self
            .current
            .write()
            .map_err(|_| anyhow::format_err!("poisoned"))?;
        if current.0 == bytes {
            return Ok(false);
        }
        *current = (bytes, certified);
        Ok(true)
    }
}

fn read_pair(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<(Vec<u8>, Arc<CertifiedKey>)> {
    use anyhow::Context;
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} is not PEM", key.display()))?
        .with_context(|| format!("{} holds no private key", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider).with_context(|| {
        format!(
            "{} and {} do not form a pair",
            cert.display(),
            key.display()
        )
    })?;
    let mut bytes = cert_pem;
    bytes.extend_from_slice(&key_pem);
    Ok((bytes, Arc::new(certified)))
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.1.clone())
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight (up to `drain`).
pub async fn serve(
    settings: Settings,
    shared: Shared,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let certificates = Reloading::load(settings.cert.clone(), settings.key.clone())?;
    let watcher = {
        let certificates = certificates.clone();
        let every = settings.reload_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match certificates.reload() {
                    Ok(true) => tracing::info!("serving certificate reloaded"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        "serving certificate not reloaded (keeping the current one): {error:#}"
                    ),
                }
            }
        })
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app = router(shared, settings.max_body);
    let graceful = GracefulShutdown::new();
    let http = Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accept failed: {error}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let http = http.clone();
        let watch = graceful.watcher();
        tokio::spawn(async move {
            // A client that never finishes its handshake does not hold a task forever.
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(socket))
                .await
            {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let connection = http
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app));
            let _ = watch.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    watcher.abort();
    tracing::info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(25)) => {
            tracing::warn!("requests still in flight after 25 s; stopping");
        }
    }
    Ok(())
}
