//! The HTTP client of every S3 client here (but behind a proxy): hyper-util's pool over rustls,
//! built here rather than by the SDK so that a connection's read buffer stays small.
//!
//! hyper grows a connection's read buffer up to about 400 KiB while a body arrives faster than it
//! is taken, and each body chunk keeps its part of that allocation until written, so the memory
//! bound let few bodies fly (`docs/tuning.md`, "Figures behind the code"). The SDK's builder keeps hyper's to itself
//! (aws-smithy-http-client 1.5), so this is the SDK's connector again, with [`READ_BUFFER`]: TLS
//! by rustls (aws-lc, the SDK's cipher suites) with the system's roots and `AWS_CA_BUNDLE`, or
//! none verified for `AWS_VERIFY_SSL=false`; `TCP_NODELAY`; the connect and read timeouts; the
//! SDK's classes of failure (which say what is retried); and a connection a request failed on is
//! not used again (the SDK poisons it). Behind a proxy the SDK's own connector is used: it speaks
//! CONNECT and proxy authentication, this does not.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use aws_smithy_runtime_api::client::{
    connection::{CaptureSmithyConnection, ConnectionMetadata},
    http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    },
    orchestrator::{HttpRequest, HttpResponse},
    result::ConnectorError,
    runtime_components::RuntimeComponents,
};
use aws_smithy_types::{body::SdkBody, retry::ErrorKind};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{CaptureConnection, HttpConnector as Tcp, HttpInfo, capture_connection},
    },
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, crypto::CryptoProvider};

/// The most a connection's read buffer grows to (hyper's default is about 400 KiB, its least
/// 8 KiB). 64 KiB reads still move a GiB in 16,384 of them: a few hundred microseconds of
/// system calls against seconds of hashing.
pub const READ_BUFFER: usize = 64 * 1024;

type Https = hyper_rustls::HttpsConnector<Tcp>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A connector's connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

/// The client: a connector (and its pool) per connect and read timeout the SDK asks for, as the
/// SDK's own client keeps them (in practice one: `client::sdk_config` sets both).
pub(crate) struct Hyper {
    tls: ClientConfig,
    connectors: RwLock<HashMap<Timeouts, SharedHttpConnector>>,
}

impl std::fmt::Debug for Hyper {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("plx-credentials::http::Hyper")
    }
}

/// One pool, and the read timeout its requests wait for their response's head.
#[derive(Clone)]
struct Connector {
    client: Client<Timed, SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("plx-credentials::http::Connector")
    }
}

/// The client over TLS configured by `tls` (and plain HTTP for `http://` endpoints).
pub(crate) fn client(tls: ClientConfig) -> SharedHttpClient {
    SharedHttpClient::new(Hyper {
        tls,
        connectors: RwLock::new(HashMap::new()),
    })
}

/// The SDK's cipher suites, from aws-lc: TLS 1.3's AES-GCM, TLS 1.2's ECDHE with AES-GCM or
/// ChaCha20 (aws-smithy-http-client's `restrict_ciphers`).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::*;
    let wanted = [
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let cipher_suites = wanted
        .iter()
        .filter_map(|wanted| {
            base.cipher_suites
                .iter()
                .find(|suite| suite.suite() == *wanted)
                .copied()
        })
        .collect();
    Arc::new(CryptoProvider {
        cipher_suites,
        ..base
    })
}

impl Hyper {
    fn connector(&self, connect: Option<Duration>, read: Option<Duration>) -> Connector {
        let mut tcp = Tcp::new();
        // https:// is the TLS layer's to take.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            // Without a timer hyper never closes an idle connection.
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(READ_BUFFER)
            .build(Timed {
                inner: https,
                limit: connect,
            });
        Connector {
            client,
            read_timeout: read,
        }
    }
}

impl HttpClient for Hyper {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        if let Some(connector) = self
            .connectors
            .read()
            .ok()
            .and_then(|connectors| connectors.get(&key).cloned())
        {
            return connector;
        }
        let connector = SharedHttpConnector::new(self.connector(key.0, key.1));
        if let Ok(mut connectors) = self.connectors.write() {
            return connectors.entry(key).or_insert(connector).clone();
        }
        connector
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into())));
            }
        };
        // The SDK's retry poisons the connection a request failed on, so that the next attempt
        // opens a new one rather than meet the same broken peer.
        let captured = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || metadata(&captured));
        }
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response).await.map_err(|_| {
                    ConnectorError::timeout(
                        format!("no response within the read timeout of {limit:?}").into(),
                    )
                })?,
                None => response.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|error| ConnectorError::other(error.into(), None))
        })
    }
}

/// The connect timeout over the TCP connection and the TLS handshake both, as the SDK's.
#[derive(Clone)]
struct Timed {
    inner: Https,
    limit: Option<Duration>,
}

impl tower_service::Service<http::Uri> for Timed {
    type Response = <Https as tower_service::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            let Some(limit) = limit else {
                return connecting.await;
            };
            tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| -> BoxError {
                    Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within the connect timeout of {limit:?}"),
                    ))
                })?
        })
    }
}

fn metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let connected = captured.connection_metadata();
    let connected = connected.as_ref()?;
    let mut extensions = http::Extensions::new();
    connected.get_extras(&mut extensions);
    let info = extensions.get::<HttpInfo>();
    let poisoned = captured.clone();
    let mut builder = ConnectionMetadata::builder()
        .proxied(false)
        .poison_fn(move || {
            if let Some(connected) = poisoned.connection_metadata().as_ref() {
                connected.poison();
            }
        });
    builder
        .set_local_addr(info.map(HttpInfo::local_addr))
        .set_remote_addr(info.map(HttpInfo::remote_addr));
    Some(builder.build())
}

/// hyper's failure as the SDK classes it (`aws-smithy-http-client`'s `downcast_error`): what
/// never reached the store or broke off on the way is I/O and retried, as is a message cut
/// short (S3 sends some); a bad request is the caller's.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let chain = || {
        std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
    };
    let hyper = chain().find_map(|e| e.downcast_ref::<hyper::Error>());
    let io = chain().find_map(|e| e.downcast_ref::<std::io::Error>());
    if io.is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
        return ConnectorError::timeout(error.into());
    }
    let io = io.is_some();
    if let Some(hyper) = hyper {
        if hyper.is_timeout() {
            return ConnectorError::timeout(error.into());
        }
        if hyper.is_user() {
            return ConnectorError::user(error.into());
        }
        if hyper.is_closed() || hyper.is_canceled() || io {
            return ConnectorError::io(error.into());
        }
        if hyper.is_incomplete_message() {
            return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
        }
        return ConnectorError::other(error.into(), None);
    }
    if error.is_connect() || io {
        return ConnectorError::io(error.into());
    }
    ConnectorError::other(error.into(), None)
}
