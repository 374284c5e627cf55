//! `k8sup-apiserver-proxy`: run the node-local API-server proxy.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use k8sup_apiserver_proxy::{Config, DEFAULT_PATH, Options, Proxy};

/// Forward this node's local Kubernetes API port to a healthy kube-apiserver.
///
/// On nodes without a control plane, the kubelet and kube-proxy talk to
/// https://127.0.0.1:6443; this proxy passes their TCP connections (TLS
/// stays end to end) to the first healthy control plane in the configured
/// list, and to the next one when it fails. k8sup writes the list and
/// installs this as the k8sup-apiserver-proxy systemd service.
///
/// Health: with "caFile" set, each upstream is checked with an anonymous
/// HTTPS GET /readyz verified against that CA (200 = healthy); otherwise
/// with a TCP connect. An upstream is marked down after "fall" failed
/// checks, or at once when a client's connection cannot reach it, and up
/// again after "rise" good checks.
///
/// Reload: the config file (and its CA file) are checked every second, and
/// re-read at once on SIGHUP (systemctl reload). A file that does not parse
/// or check is refused with an error naming it; the running config stays
/// (and, with --state-dir, is what a restart starts from).
///
/// Config file (JSON; only "upstreams" is required):
///   {
///     "listen": "127.0.0.1:6443",
///     "upstreams": ["10.0.0.11:6443", "10.0.0.12:6443"],
///     "caFile": "/etc/kubernetes/pki/ca.crt",
///     "tlsServerName": null,
///     "connectTimeoutMs": 3000,
///     "maxConnections": 1024,
///     "closeConnectionsOnDown": true,
///     "healthCheck": {"path": "/readyz", "intervalMs": 2000,
///                     "timeoutMs": 1500, "fall": 3, "rise": 2}
///   }
#[derive(Debug, Parser)]
#[command(name = "k8sup-apiserver-proxy", version, verbatim_doc_comment)]
struct Cli {
    /// The configuration file k8sup writes.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH, env = "K8SUP_APISERVER_PROXY_CONFIG")]
    config: PathBuf,

    /// Keep a copy of the last accepted configuration here, and start from
    /// it when the file is refused at start (so a restart never leaves the
    /// node without an API server). systemd's StateDirectory= sets it.
    #[arg(long, value_name = "DIR", env = "STATE_DIRECTORY")]
    state_dir: Option<PathBuf>,

    /// Check the configuration file (syntax, addresses, CA file) and exit:
    /// 0 when it would be accepted, 1 with the problem otherwise.
    #[arg(long)]
    check: bool,

    /// Log filter: error, warn, info, debug (each connection), or a
    /// tracing filter such as "k8sup_apiserver_proxy=debug".
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

    /// Log lines as text or as JSON objects.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_logs(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Under systemd the journal stamps each line already.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format == "json", journal) {
        (true, _) => b.json().init(),
        (false, true) => b.with_ansi(false).without_time().init(),
        (false, false) => b.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let options = Options {
        state_dir: cli.state_dir.clone(),
        ..Options::default()
    };
    let proxy = Proxy::start(&cli.config, options)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!(file = %cli.config.display(), "SIGHUP: re-reading the configuration");
                proxy.reload();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.check {
        return match Config::load(&cli.config) {
            Ok(c) => {
                println!(
                    "{}: ok (listen {}, upstreams {}, {} check)",
                    cli.config.display(),
                    c.listen,
                    c.upstreams.join(","),
                    if c.health.tls.is_some() {
                        "https"
                    } else {
                        "tcp"
                    }
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("k8sup-apiserver-proxy: error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    init_logs(&cli.log_level, &cli.log_format);
    // Two worker threads: the work is copying bytes and a few probes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k8sup-apiserver-proxy: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
