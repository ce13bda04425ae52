//! A TCP proxy between a client and an S3 server that breaks a share of the connections in
//! one of the ways networks and stores break: resets and truncations at a random byte of the
//! response, stalls longer than a read timeout, added latency, refused connections, and S3
//! error answers (503 SlowDown, 500 InternalError) in place of the server's.
//!
//! Each accepted connection draws from a seeded generator whether it is faulty and where the
//! fault falls, so a failing run can be replayed with the same seed.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// One way a connection goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The connection is reset (RST) at a random byte of the response.
    Reset,
    /// The response stops at a random byte and the connection closes cleanly: a short body.
    Truncate,
    /// The response stops at a random byte and nothing more comes for [`FaultProxy::stall`].
    Stall,
    /// The response starts only after [`FaultProxy::latency`].
    Latency,
    /// The connection is reset as soon as it is accepted, before any byte.
    Refuse,
    /// `503 SlowDown` answers the request instead of the server.
    SlowDown,
    /// `500 InternalError` answers the request instead of the server.
    InternalError,
}

impl Fault {
    /// Every fault, for sweeps.
    pub const ALL: [Fault; 7] = [
        Fault::Reset,
        Fault::Truncate,
        Fault::Stall,
        Fault::Latency,
        Fault::Refuse,
        Fault::SlowDown,
        Fault::InternalError,
    ];
}

struct Settings {
    faults: Vec<Fault>,
    /// Share of connections that get a fault, 0 to 1.
    rate: f64,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// How long a stalled response stays silent (longer than the client's read timeout).
    pub stall: Duration,
    /// How long a delayed response waits.
    pub latency: Duration,
    settings: Arc<Mutex<Settings>>,
    injected: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies `127.0.0.1:<port>` to `upstream`, breaking `rate` of the connections with one
    /// of `faults` (drawn with `seed`).
    pub async fn start(
        upstream: SocketAddr,
        faults: &[Fault],
        rate: f64,
        seed: u64,
    ) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (stall, latency) = (Duration::from_secs(3), Duration::from_millis(300));
        let settings = Arc::new(Mutex::new(Settings {
            faults: faults.to_vec(),
            rate,
        }));
        let injected = Arc::new(AtomicUsize::new(0));
        let shared = (settings.clone(), injected.clone());
        let counter = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = counter.fetch_add(1, Ordering::Relaxed);
                let mut random = Random::new(seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let fault = shared.0.lock().ok().and_then(|settings| {
                    (!settings.faults.is_empty() && random.unit() < settings.rate).then(|| {
                        settings.faults[random.below(settings.faults.len() as u64) as usize]
                    })
                });
                if fault.is_some() {
                    shared.1.fetch_add(1, Ordering::Relaxed);
                }
                // Somewhere in the first 64 KiB of the response: headers or body.
                let offset = random.below(64 * 1024) as usize;
                tokio::spawn(serve(client, upstream, fault, offset, stall, latency));
            }
        });
        Ok(FaultProxy {
            port,
            stall,
            latency,
            settings,
            injected,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the share of faulty connections (0 heals the network).
    pub fn set_rate(&self, rate: f64) {
        if let Ok(mut settings) = self.settings.lock() {
            settings.rate = rate;
        }
    }

    /// How many connections got a fault so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Option<Fault>,
    offset: usize,
    stall: Duration,
    latency: Duration,
) {
    match fault {
        Some(Fault::Refuse) => reset(client),
        Some(fault @ (Fault::SlowDown | Fault::InternalError)) => answer_error(client, fault).await,
        _ => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return reset(client);
            };
            if fault == Some(Fault::Reset) {
                // Closing with linger 0 sends RST instead of FIN.
                let _ = client.set_zero_linger();
            }
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let requests = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                let _ = server_write.shutdown().await;
            });
            if fault == Some(Fault::Latency) {
                tokio::time::sleep(latency).await;
            }
            let limit = match fault {
                Some(Fault::Reset | Fault::Truncate | Fault::Stall) => offset,
                _ => usize::MAX,
            };
            let mut sent = 0;
            let mut buffer = vec![0u8; 16 * 1024];
            while sent < limit {
                let read = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let take = read.min(limit - sent);
                if client_write.write_all(&buffer[..take]).await.is_err() {
                    break;
                }
                sent += take;
            }
            match fault {
                Some(Fault::Stall) => tokio::time::sleep(stall).await,
                Some(Fault::Truncate) => {
                    let _ = client_write.shutdown().await;
                }
                _ => {}
            }
            // Both halves drop here (the read half with the aborted copier).
            requests.abort();
            let _ = requests.await;
        }
    }
}

fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

/// Reads the request head and answers with an S3 error, as a store under load does.
async fn answer_error(mut client: TcpStream, fault: Fault) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let (status, code, message) = match fault {
        Fault::SlowDown => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        _ => (
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>plx-fault</RequestId></Error>"
    );
    // A HEAD answer has no body, whatever its length says.
    let body = if head.starts_with(b"HEAD ") {
        ""
    } else {
        body.as_str()
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: plx-fault\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// xorshift64*: enough randomness for fault placement and kill moments, and replayable.
pub struct Random(u64);

impl Random {
    /// Seeds through splitmix64, so nearby seeds (and connection numbers) draw apart.
    pub fn new(seed: u64) -> Random {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Random((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A draw in [0, bound).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}
