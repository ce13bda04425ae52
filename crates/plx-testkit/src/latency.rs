//! A store made far away: an HTTP/1.1 proxy that holds back the first byte of every response by a
//! set delay (with seeded jitter), caps each connection's bytes per second, and makes a seeded
//! share of responses stragglers (their first byte very late), stall in the middle of the body,
//! or answer 503 SlowDown (the store pushing back); and a seeded share of object bodies come
//! back corrupt (one byte flipped, the length and headers as the store sent them: what checksums
//! are for) or slow (trickling at a few KiB a second), and object PUTs reach the store corrupt
//! (what an upload's checksum is for) or slowly; and an object can be overwritten in the
//! store between two ranged GETs of one download (what pinning a download to its ETag is for).
//! This kernel has no netem (`tc qdisc … netem` is unknown), so this is how the benchmark and the
//! tests put a round trip between the client and a server on loopback.
//!
//! It speaks HTTP on both sides (hyper) rather than copying TCP: a delay then lands on every
//! request of a keep-alive connection, not only on its first. Requests are forwarded unchanged,
//! `Host` included, so signatures still hold.

use std::{
    collections::HashSet,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Frame, Incoming},
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::faults::Random;

/// What the path between client and store is like.
#[derive(Debug, Clone)]
pub struct Network {
    /// Added before each response's first byte: a round trip.
    pub delay: Duration,
    /// Up to this much more, drawn per request.
    pub jitter: Duration,
    /// Bytes per second per connection, each way (S3 gives about 90 MB/s); `None`: no cap.
    pub bandwidth: Option<u64>,
    /// Share of responses whose first byte comes after [`Network::late_by`] instead: stragglers.
    /// Only a request's first time: the same request again (a retry, a hedge) is never late nor
    /// stalled, as a second request avoids the slow server or path the first met.
    pub late: f64,
    /// How late a straggler is.
    pub late_by: Duration,
    /// Share of responses that stop after some of their body and go silent for
    /// [`Network::stall_for`] before going on.
    pub stall: f64,
    /// How long a stalled body stays silent.
    pub stall_for: Duration,
    /// Share of requests answered 503 SlowDown after the delay, without reaching the store: a
    /// store pushing back. Only a request's first time, like the others, so the SDK's own
    /// retry gets through.
    pub busy: f64,
    /// Share of object GETs (a 200 or 206 with a body) whose body comes back with one byte
    /// flipped: the same length, the same headers. A request's first time only.
    pub corrupt: f64,
    /// Share of object PUTs (a PutObject or an UploadPart) whose body reaches the store with
    /// one byte flipped, its length and headers (the checksum the client sent among them) as
    /// sent: what an upload's checksum is for. A request's first time only.
    pub corrupt_sent: f64,
    /// Share of object GETs whose body trickles at [`Network::slow_rate`]. A request's first
    /// time only.
    pub slow: f64,
    /// Share of object PUTs whose body reaches the store at [`Network::slow_rate`]. A request's
    /// first time only.
    pub slow_sent: f64,
    /// Bytes per second of a slow body.
    pub slow_rate: u64,
    /// An object overwritten in the store between two ranged GETs of it (the first is
    /// answered with the old bytes; every later one waits until the new ones are stored).
    pub change: Option<Change>,
    /// The first this many requests are never stragglers nor stalled: a client's warm-up.
    pub spare: u64,
    /// Seeds every draw, so a run can be replayed.
    pub seed: u64,
}

/// What [`Network::change`] writes, and where.
#[derive(Debug, Clone)]
pub struct Change {
    /// The object's path as the client asks for it (path-style: `/bucket/key`).
    pub path: String,
    /// A presigned PUT of the object on the store itself: the proxy holds no credentials.
    pub put: String,
    /// The new bytes.
    pub body: Bytes,
}

impl Network {
    /// `delay` on every response and nothing else.
    pub fn far(delay: Duration) -> Network {
        Network {
            delay,
            jitter: Duration::ZERO,
            bandwidth: None,
            late: 0.0,
            late_by: Duration::ZERO,
            stall: 0.0,
            stall_for: Duration::ZERO,
            busy: 0.0,
            corrupt: 0.0,
            corrupt_sent: 0.0,
            slow: 0.0,
            slow_sent: 0.0,
            slow_rate: 4096,
            change: None,
            spare: 0,
            seed: 1,
        }
    }
}

/// What the proxy did, for tests to hold the client to.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Responses made stragglers.
    pub late: AtomicU64,
    /// Responses that went silent mid-body.
    pub stalled: AtomicU64,
    /// Requests answered 503 SlowDown.
    pub busy: AtomicU64,
    /// Bodies with a byte flipped, either way.
    pub corrupted: AtomicU64,
    /// Bodies sent slowly, either way.
    pub slowed: AtomicU64,
    /// Objects overwritten between two ranged GETs.
    pub changed: AtomicU64,
    /// Requests whose client went away before their response was complete.
    pub abandoned: AtomicU64,
}

struct Shared {
    /// Requests seen (method, target, range): only a first time may be made late or stalled.
    seen: Mutex<HashSet<String>>,
    upstream: SocketAddr,
    network: Network,
    client: Client<HttpConnector, Body>,
    counts: Arc<Counts>,
    /// [`Network::change`]: whether a ranged GET of the object was let through (the one the
    /// old bytes answer), and whether the new bytes are stored.
    change_begun: std::sync::atomic::AtomicBool,
    changed: tokio::sync::watch::Sender<bool>,
}

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// The proxy; stops when dropped.
pub struct LatencyProxy {
    /// The port on 127.0.0.1.
    pub port: u16,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl LatencyProxy {
    /// Proxies `127.0.0.1:<port>` to the HTTP server at `upstream` over `network`.
    pub async fn start(upstream: SocketAddr, network: Network) -> anyhow::Result<LatencyProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            seen: Mutex::default(),
            upstream,
            network,
            client: Client::builder(TokioExecutor::new()).build(connector),
            counts: counts.clone(),
            change_begun: std::sync::atomic::AtomicBool::new(false),
            changed: tokio::sync::watch::channel(false).0,
        });
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                shared.counts.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| forward(request, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Ok(LatencyProxy { port, counts, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy has done so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Marks a request abandoned unless it was seen through.
struct Watch {
    counts: Arc<Counts>,
    done: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            self.counts.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One request: sent on upstream, its response held back by the round trip (or a straggler's
/// delay), its body shaped on the way back.
async fn forward(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let network = &shared.network;
    let number = shared.counts.requests.fetch_add(1, Ordering::Relaxed);
    let mut random = Random::new(network.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let again = {
        let range = request
            .headers()
            .get(hyper::header::RANGE)
            .and_then(|range| range.to_str().ok())
            .unwrap_or("");
        let target = format!("{} {} {range}", request.method(), request.uri());
        shared
            .seen
            .lock()
            .map_or(true, |mut seen| !seen.insert(target))
    };
    let spare = number < network.spare || again;
    let late = random.unit() < network.late && !spare;
    let stalls = random.unit() < network.stall && !spare;
    // Drawn only when asked for, so the other draws of a seed stay as they were.
    let busy = network.busy > 0.0 && random.unit() < network.busy && !spare;
    // An object's GET (path-style: a bucket and a key; not a listing).
    let object = request.method() == hyper::Method::GET
        && !request
            .uri()
            .query()
            .is_some_and(|query| query.contains("list-type"))
        && request.uri().path().trim_matches('/').contains('/');
    // The first ranged GET of the object to change is answered before it changes; every other
    // one waits until it has (so at least one part of a download meets each version).
    let changes = network.change.as_ref().filter(|change| {
        object
            && request.headers().contains_key(hyper::header::RANGE)
            && request.uri().path() == change.path
    });
    let first_to_change =
        changes.is_some_and(|_| !shared.change_begun.swap(true, Ordering::SeqCst));
    if changes.is_some() && !first_to_change {
        let _ = shared
            .changed
            .subscribe()
            .wait_for(|changed| *changed)
            .await;
    }
    let corrupts = network.corrupt > 0.0 && random.unit() < network.corrupt && !spare && object;
    let slow = network.slow > 0.0 && random.unit() < network.slow && !spare && object;
    let sent_length = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let corrupts_sent = network.corrupt_sent > 0.0
        && random.unit() < network.corrupt_sent
        && !spare
        && request.method() == hyper::Method::PUT
        && sent_length > 0;
    let slow_sent = network.slow_sent > 0.0
        && random.unit() < network.slow_sent
        && !spare
        && request.method() == hyper::Method::PUT
        && sent_length > 0;
    let delay = if late {
        shared.counts.late.fetch_add(1, Ordering::Relaxed);
        network.late_by
    } else {
        network.delay + network.jitter.mul_f64(random.unit())
    };
    let mut watch = Watch {
        counts: shared.counts.clone(),
        done: false,
    };
    if busy {
        shared.counts.busy.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        watch.done = true;
        return Ok(slow_down());
    }
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{}{path}", shared.upstream).parse() else {
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    // A request without a body (S3's CreateMultipartUpload is a POST with none, and no
    // Content-Length) goes on without one: as a stream of unknown length hyper would send it
    // chunked, and S3 refuses that (411 MissingContentLength).
    let body = if hyper::body::Body::is_end_stream(&body) {
        empty()
    } else {
        let corrupt = corrupts_sent.then(|| Corrupt {
            at: random.below(sent_length),
            counts: shared.counts.clone(),
        });
        let bandwidth = if slow_sent {
            shared.counts.slowed.fetch_add(1, Ordering::Relaxed);
            Some(network.slow_rate.min(network.bandwidth.unwrap_or(u64::MAX)))
        } else {
            network.bandwidth
        };
        shaped(body, bandwidth, None, corrupt)
    };
    let upstream = Request::from_parts(parts, body);
    let response = shared.client.request(upstream).await;
    // Whatever the first answer was: the GETs waiting on the change never wait for good.
    if let Some(change) = changes.filter(|_| first_to_change) {
        overwrite(&shared, change).await;
    }
    let response = match response {
        Ok(response) => response,
        Err(_) => return Ok(answer(StatusCode::BAD_GATEWAY)),
    };
    tokio::time::sleep(delay).await;
    let (mut parts, body) = response.into_parts();
    // Somewhere in the body's first 64 KiB (or all of it, when shorter).
    let length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(64 * 1024);
    let stall = (stalls && length > 0).then(|| Stall {
        after: random.below(length.min(64 * 1024)),
        silence: network.stall_for,
        counts: shared.counts.clone(),
    });
    let whole = matches!(parts.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    let corrupt = (corrupts && whole && length > 0).then(|| Corrupt {
        at: random.below(length),
        counts: shared.counts.clone(),
    });
    let bandwidth = if slow && whole && length > 0 {
        shared.counts.slowed.fetch_add(1, Ordering::Relaxed);
        Some(network.slow_rate.min(network.bandwidth.unwrap_or(u64::MAX)))
    } else {
        network.bandwidth
    };
    strip_hop_by_hop(&mut parts.headers);
    watch.done = true;
    Ok(Response::from_parts(
        parts,
        shaped(body, bandwidth, stall, corrupt),
    ))
}

/// Stores [`Change::body`] through its presigned PUT, counts it, and lets the waiting GETs on.
/// A PUT that fails is not counted, so a case whose object never changed says so.
async fn overwrite(shared: &Shared, change: &Change) {
    let put = Request::put(change.put.as_str())
        .header(hyper::header::CONTENT_LENGTH, change.body.len())
        .body(full(change.body.clone()));
    if let Ok(put) = put
        && let Ok(response) = shared.client.request(put).await
        && response.status().is_success()
    {
        shared.counts.changed.fetch_add(1, Ordering::Relaxed);
    }
    shared.changed.send_replace(true);
}

/// S3's 503 SlowDown, as the store words it.
fn slow_down() -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    )));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

fn full(bytes: Bytes) -> Body {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn answer(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    response
}

/// Headers about one hop, which the proxy's own connections set for themselves.
fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// Where a body goes silent, for how long, and where that is counted.
struct Stall {
    after: u64,
    silence: Duration,
    counts: Arc<Counts>,
}

/// Which byte of a body goes wrong, and where that is counted.
struct Corrupt {
    at: u64,
    counts: Arc<Counts>,
}

/// `body` at most `bandwidth` bytes per second, silent for a while past `stall.after` bytes (a
/// body shorter than that never stalls), and its byte at `corrupt.at` flipped.
fn shaped(
    body: Incoming,
    bandwidth: Option<u64>,
    stall: Option<Stall>,
    corrupt: Option<Corrupt>,
) -> Body {
    struct Flow {
        body: Incoming,
        sent: u64,
        started: Instant,
        paused: Duration,
        stall: Option<Stall>,
        corrupt: Option<Corrupt>,
    }
    let flow = Flow {
        body,
        sent: 0,
        started: Instant::now(),
        paused: Duration::ZERO,
        stall,
        corrupt,
    };
    let frames = futures::stream::unfold(flow, move |mut flow| async move {
        let mut frame = match flow.body.frame().await? {
            Ok(frame) => frame,
            Err(error) => return Some((Err(error), flow)),
        };
        if let Some(data) = frame.data_ref()
            && let Some(corrupt) = flow
                .corrupt
                .take_if(|corrupt| flow.sent + data.len() as u64 > corrupt.at)
        {
            let mut bytes = data.to_vec();
            bytes[(corrupt.at - flow.sent) as usize] ^= 0x5a;
            corrupt.counts.corrupted.fetch_add(1, Ordering::Relaxed);
            frame = Frame::data(Bytes::from(bytes));
        }
        if let Some(data) = frame.data_ref() {
            let length = data.len() as u64;
            if let Some(stall) = flow.stall.take_if(|stall| flow.sent + length > stall.after) {
                stall.counts.stalled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(stall.silence).await;
                flow.paused += stall.silence;
            }
            flow.sent += length;
            if let Some(rate) = bandwidth {
                // Released when a connection at `rate` would have carried it.
                let due = Duration::from_secs_f64(flow.sent as f64 / rate.max(1) as f64);
                let elapsed = flow.started.elapsed().saturating_sub(flow.paused);
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
        }
        Some((Ok::<Frame<Bytes>, hyper::Error>(frame), flow))
    });
    StreamBody::new(frames).boxed_unsync()
}
