//! A forward HTTP proxy (CONNECT tunnels and absolute-form requests) that counts what it carries.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A proxy on `127.0.0.1:<port>`. Stops when dropped.
pub struct HttpProxy {
    /// The port on 127.0.0.1.
    pub port: u16,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpProxy {
    /// Starts the proxy.
    pub async fn start() -> anyhow::Result<HttpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        Ok(HttpProxy {
            port,
            connections,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many client connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        rest.split('/').next().unwrap_or(rest).to_owned()
    };
    let Ok(mut upstream) = TcpStream::connect(&authority).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if method == "CONNECT" {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else if upstream.write_all(&head).await.is_err() {
        return;
    }
    // HTTP/1.1 servers accept absolute-form request targets, so the bytes go on unchanged.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A plain TCP forwarder with a fixed port whose upstream can change, so a client keeps one
/// endpoint while the server behind it restarts on another port.
pub struct TcpForwarder {
    /// The port on 127.0.0.1.
    pub port: u16,
    upstream: Arc<std::sync::Mutex<std::net::SocketAddr>>,
    task: JoinHandle<()>,
}

impl TcpForwarder {
    /// Forwards `127.0.0.1:<port>` to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> anyhow::Result<TcpForwarder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(std::sync::Mutex::new(upstream));
        let current = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(target) = current.lock().map(|target| *target) else {
                    return;
                };
                tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        Ok(TcpForwarder {
            port,
            upstream: shared,
            task,
        })
    }

    /// Sends new connections to `upstream`.
    pub fn set_upstream(&self, upstream: std::net::SocketAddr) {
        if let Ok(mut target) = self.upstream.lock() {
            *target = upstream;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
