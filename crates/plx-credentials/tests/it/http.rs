//! The HTTP client plx-credentials builds (`src/http.rs`), against a real server: what a body
//! holds per connection, and the connect and read timeouts against a peer that never answers.

use std::time::{Duration, Instant};

use aws_sdk_s3::config::{retry::RetryConfig, timeout::TimeoutConfig};
use plx_credentials::{READ_BUFFER, S3Settings};
use plx_testkit::{S3Server, TlsProxy, bytes};

use crate::s3::{BUCKET, connection, env, keys};

async fn client(pairs: &[(String, String)]) -> anyhow::Result<aws_sdk_s3::Client> {
    let settings = S3Settings::resolve(&connection(BUCKET, ""), &env(pairs))?;
    Ok(plx_credentials::client(&settings).await?)
}

/// Every chunk of a body is cut from the connection's read buffer, so none is larger than it:
/// a body arriving faster than it is taken holds at most [`READ_BUFFER`] (hyper's default lets
/// it grow to about 400 KiB, which is what bounded how many downloads could fly at once). Over
/// plain HTTP and over TLS.
#[tokio::test]
async fn a_body_arrives_in_chunks_no_larger_than_the_read_buffer() -> anyhow::Result<()> {
    let server = S3Server::start().await?;
    server.create_bucket(BUCKET).await?;
    let body = bytes(7, 8 * 1024 * 1024 + 3);
    server.put(BUCKET, "v1/large.bin", body.clone()).await?;
    let proxy = TlsProxy::start(([127, 0, 0, 1], server.port).into()).await?;
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), &proxy.ca_pem)?;
    let mut tls = keys(&server, &proxy.endpoint());
    tls.push(("AWS_CA_BUNDLE".to_owned(), ca.path().display().to_string()));
    for pairs in [keys(&server, &server.endpoint), tls] {
        let client = client(&pairs).await?;
        let mut stream = client
            .get_object()
            .bucket(BUCKET)
            .key("v1/large.bin")
            .send()
            .await?
            .body;
        let (mut got, mut largest) = (Vec::new(), 0);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            largest = largest.max(chunk.len());
            got.extend_from_slice(&chunk);
            // Taken slower than it arrives, so that the buffer has reason to grow.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        assert!(got == body, "the body came back changed");
        assert!(
            largest <= READ_BUFFER,
            "a chunk of {largest} bytes, over the {READ_BUFFER}-byte read buffer"
        );
    }
    Ok(())
}

/// A peer that takes connections and never says a word: the read timeout ends a request over
/// plain HTTP, the connect timeout a TLS handshake (it covers the handshake, not only TCP), and
/// both as timeouts, which the SDK retries.
#[tokio::test]
async fn a_silent_peer_is_given_up_at_the_timeouts() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let short = Duration::from_millis(300);
    let long = Duration::from_secs(60);
    for (endpoint, connect, read) in [
        (format!("http://{address}"), long, short),
        (format!("https://{address}"), short, long),
    ] {
        let pairs = [
            ("AWS_ACCESS_KEY_ID".to_owned(), "id".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "secret".to_owned()),
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()),
        ];
        let client = client(&pairs).await?;
        let client = aws_sdk_s3::Client::from_conf(
            client
                .config()
                .to_builder()
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(connect)
                        .read_timeout(read)
                        .build(),
                )
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let started = Instant::now();
        let error = client
            .head_object()
            .bucket(BUCKET)
            .key("v1/a")
            .send()
            .await
            .expect_err("a silent peer cannot answer");
        let took = started.elapsed();
        let timed_out = match &error {
            aws_sdk_s3::error::SdkError::DispatchFailure(failure) => failure.is_timeout(),
            aws_sdk_s3::error::SdkError::TimeoutError(_) => true,
            _ => false,
        };
        assert!(
            timed_out,
            "{endpoint}: not a timeout: {}",
            aws_sdk_s3::error::DisplayErrorContext(&error)
        );
        assert!(
            took < Duration::from_secs(10),
            "{endpoint}: given up after {took:?}"
        );
    }
    held.abort();
    Ok(())
}
