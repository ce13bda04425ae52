//! The paths a run takes to the server: straight (loopback), or through the testkit's
//! `LatencyProxy` with a round trip added to every response (`--latency MS`), and for W3 also
//! with each connection capped at S3's per-connection bandwidth (`--bandwidth MBPS`). Every
//! tool of a row set goes the same way, through the same proxy.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use plx_testkit::{LatencyProxy, Network, S3Server};

/// One way to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// `None`: straight to the server, no proxy.
    pub delay_ms: Option<u64>,
    /// Bytes per second per connection.
    pub bandwidth: Option<u64>,
}

impl Path {
    pub const DIRECT: Path = Path {
        delay_ms: None,
        bandwidth: None,
    };

    /// How the report names it.
    pub fn label(&self) -> String {
        match (self.delay_ms, self.bandwidth) {
            (None, _) => "loopback, no proxy".to_owned(),
            (Some(ms), None) => format!("{ms} ms"),
            (Some(ms), Some(rate)) => format!("{ms} ms, {} MB/s per connection", rate / 1_000_000),
        }
    }

    /// The paths a workload runs over: straight, then each latency; W3 also capped.
    pub fn for_workload(name: &str, latencies: &[u64], bandwidth: u64) -> Vec<Path> {
        let mut paths = vec![Path::DIRECT];
        for &ms in latencies {
            paths.push(Path {
                delay_ms: Some(ms),
                bandwidth: None,
            });
            if name == "W3" {
                paths.push(Path {
                    delay_ms: Some(ms),
                    bandwidth: Some(bandwidth),
                });
            }
        }
        paths
    }
}

/// A path in use: where the tools connect, and the proxy while it lasts.
pub struct Route {
    pub endpoint: String,
    pub client: aws_sdk_s3::Client,
    proxy: Option<LatencyProxy>,
}

impl Route {
    /// Opens `path` to `server`: a proxy with the delay, 10% of it as jitter, and the cap.
    pub async fn open(path: &Path, server: &S3Server) -> anyhow::Result<Route> {
        let Some(ms) = path.delay_ms else {
            return Ok(Route {
                endpoint: server.endpoint.clone(),
                client: server.client.clone(),
                proxy: None,
            });
        };
        let upstream: SocketAddr = server
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .context("the server's endpoint is not host:port")?;
        let delay = Duration::from_millis(ms);
        let network = Network {
            jitter: delay / 10,
            bandwidth: path.bandwidth,
            ..Network::far(delay)
        };
        let proxy = LatencyProxy::start(upstream, network).await?;
        let endpoint = proxy.endpoint();
        let client = plx_testkit::client_for(
            &endpoint,
            &server.region,
            &server.access_key,
            &server.secret_key,
        );
        Ok(Route {
            endpoint,
            client,
            proxy: Some(proxy),
        })
    }

    /// Connections and requests the proxy has seen so far; `None` on loopback.
    pub fn seen(&self) -> Option<(u64, u64)> {
        self.proxy.as_ref().map(|proxy| {
            let counts = proxy.counts();
            (
                counts
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed),
                counts.requests.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }
}
