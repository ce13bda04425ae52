//! A TLS terminator in front of a plain-HTTP server, with a CA made for the test.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A test CA and a serving certificate it signs, in PEM.
pub struct Pki {
    /// The CA: trust this to trust the server.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Pki {
    /// A fresh CA and a certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> anyhow::Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "plx-testkit CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )?
        .signed_by(&leaf_key, &issuer)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir`, as cert-manager's Secret holds them.
    pub fn write(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("ca.crt"), &self.ca_pem)?;
        std::fs::write(dir.join("tls.key"), &self.key_pem)?;
        std::fs::write(dir.join("tls.crt"), &self.cert_pem)?;
        Ok(())
    }
}

/// Accepts TLS on `127.0.0.1:<port>` for `localhost` and `127.0.0.1` and forwards the bytes to
/// the upstream. Stops when dropped.
pub struct TlsProxy {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The test CA, PEM: trust this to trust the proxy.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Starts a terminator for `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<TlsProxy> {
        let pki = Pki::new(&["localhost", "127.0.0.1"])?;
        let leaf = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
            .next()
            .context("a certificate")??;
        let leaf_key =
            rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())?.context("a private key")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf], leaf_key)
            .context("TLS server config")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends the handshake; that is the test.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Ok(TlsProxy {
            port,
            ca_pem: pki.ca_pem,
            task,
        })
    }

    /// `https://localhost:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
