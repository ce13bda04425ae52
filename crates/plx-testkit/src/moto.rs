//! moto (PyPI `moto[server]`), which speaks STS, as a child process on a loopback port.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

/// A running `moto_server`. Dropping it kills the process.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto from `PLX_MOTO_SERVER`, or the tools venv `cargo xtask test` makes under `target/`.
    pub async fn start() -> anyhow::Result<Moto> {
        let program = std::env::var_os("PLX_MOTO_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target/plx-tools/bin/moto_server"));
        if !program.exists() {
            bail!(
                "{} is missing: run the tests with `cargo xtask test`, which installs moto",
                program.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                bail!("moto did not listen on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
