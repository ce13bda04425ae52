//! The `plx-webhook` binary: `serve` (HTTPS) and `review FILE` (the same handler, offline).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use plx_webhook::{Cache, Keys, server};

#[derive(Parser)]
#[command(
    name = "plx-webhook",
    version,
    about = "Validating admission webhook for Polyaxon connection catalogs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve AdmissionReview v1 over HTTPS on /validate, with /healthz, /readyz and /metrics.
    Serve(Serve),
    /// Run an AdmissionReview JSON file through the handler and print the response.
    Review {
        /// The AdmissionReview (`-` for standard input).
        file: PathBuf,
        /// Cross-object problems are errors (no cluster here: they are not checked).
        #[arg(long)]
        strict: bool,
    },
}

#[derive(clap::Args)]
struct Serve {
    /// Where to listen.
    #[arg(long, default_value = "0.0.0.0:8443")]
    addr: SocketAddr,
    /// The serving certificate (PEM); reloaded when it changes.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Seconds between checks of the certificate files.
    #[arg(long, default_value_t = 5.0)]
    reload_every: f64,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body: usize,
    /// Seconds one review may take before it is refused (keep it under the
    /// ValidatingWebhookConfiguration's timeoutSeconds).
    #[arg(long, default_value_t = 2.0)]
    budget: f64,
    /// Missing Secrets, ConfigMaps and keys are errors, not warnings.
    #[arg(long)]
    strict: bool,
    /// Do not watch Secrets and ConfigMaps (no cross-object checks; ready at once).
    #[arg(long)]
    no_cluster: bool,
    /// Watch only this namespace (repeat for several; a Role in each). The default: all, which
    /// needs a ClusterRole. Reviews in namespaces not watched skip the cross-object checks.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,
}

fn main() -> ExitCode {
    // Colour only on a terminal: `kubectl logs` and log pipelines show escapes as garbage.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error")),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Review { file, strict } => review(&file, strict),
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("no runtime")
            .and_then(|runtime| runtime.block_on(serve(args))),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("plx-webhook: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn review(file: &PathBuf, strict: bool) -> anyhow::Result<ExitCode> {
    let body = if file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
        body
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    match plx_webhook::answer(&body, plx_webhook::Policy { keys: None, strict }) {
        Ok(plx_webhook::Answer { review, allowed }) => {
            println!("{}", serde_json::to_string_pretty(&review)?);
            Ok(if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(reject) => {
            eprintln!("plx-webhook: {reject}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn serve(args: Serve) -> anyhow::Result<ExitCode> {
    let ready = Arc::new(AtomicBool::new(args.no_cluster));
    let keys: Option<Arc<dyn Keys>> = if args.no_cluster {
        None
    } else {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes API to watch Secrets and ConfigMaps (use --no-cluster to skip cross-object checks)")?;
        let cache = Arc::new(Cache::new(args.namespaces.clone()));
        tokio::spawn(cache.clone().run(client, ready.clone()));
        Some(cache)
    };
    let settings = server::Settings {
        addr: args.addr,
        cert: args.cert,
        key: args.key,
        reload_every: Duration::from_secs_f64(args.reload_every.max(0.05)),
        max_body: args.max_body,
        budget: Duration::from_secs_f64(args.budget.max(0.01)),
        strict: args.strict,
    };
    let shared = server::Shared::new(keys, ready, settings.budget, settings.strict);
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving admission reviews on /validate");
    server::serve(settings, shared, listener, terminated()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
