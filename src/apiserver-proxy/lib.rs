//! `k8sup-apiserver-proxy`: the node-local API-server proxy.
//!
//! On every node that does not run kube-apiserver, it listens on the local
//! API port (127.0.0.1:6443) and forwards TCP to a healthy control plane,
//! so the kubelet and kube-proxy there need one fixed server address while
//! control planes come and go. It health-checks each upstream (HTTPS
//! `/readyz` against the cluster CA, or a TCP connect), fails over when one
//! dies, and re-reads its endpoint list (`config`) when k8sup changes it.
//! Canonical k8s runs `k8s-apiserver-proxy` for the same job.
//!
//! A node daemon: it depends on no workstation crate.
//!
//! ```no_run
//! # async fn f() -> Result<(), k8sup_apiserver_proxy::StartError> {
//! use k8sup_apiserver_proxy::{Options, Proxy};
//! let proxy = Proxy::start("/etc/k8sup/apiserver-proxy.json".as_ref(), Options::default()).await?;
//! println!("{}", proxy.local_addr());
//! proxy.reload(); // what SIGHUP does
//! # Ok(()) }
//! ```

pub mod config;
mod forward;
pub mod health;
mod last_good;
mod pool;
mod probe;
mod reload;
mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use config::{Config, ConfigError, DEFAULT_PATH};
pub use health::State;
pub use pool::UpstreamStatus;
pub use probe::probe;

use last_good::LastGood;
use pool::Pool;

/// Why the proxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: listen {addr}: {source} (is another process on that port?)")]
    Listen {
        path: PathBuf,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Knobs that are not the operator's (the config file holds those).
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the config file is checked for changes.
    pub reload_poll: Duration,
    /// Where a copy of the last accepted config is kept, to start from when
    /// the file is broken at start (systemd's `StateDirectory=`).
    pub state_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reload_poll: Duration::from_secs(1),
            state_dir: None,
        }
    }
}

/// What the running proxy is doing.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub listen: SocketAddr,
    pub upstreams: Vec<UpstreamStatus>,
    /// Why the file's current contents were refused, while they are.
    pub config_error: Option<String>,
}

/// State the tasks share.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) pool: Arc<Pool>,
    pub(crate) local_addr: Mutex<SocketAddr>,
    pub(crate) config_error: Mutex<Option<String>>,
    pub(crate) reload_now: Notify,
    pub(crate) probe_now: Arc<Notify>,
    pub(crate) rebind: mpsc::Sender<tokio::net::TcpListener>,
    pub(crate) last_good: Option<LastGood>,
}

/// A running proxy. Dropping it stops it and closes its connections.
pub struct Proxy {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Read `path`, bind its `listen` address, start probing and forwarding.
    /// A refused file falls back to the last accepted one, when
    /// `options.state_dir` holds it.
    pub async fn start(path: &Path, options: Options) -> Result<Proxy, StartError> {
        let last_good = options.state_dir.as_deref().map(LastGood::in_dir);
        let (cfg, config_error) = match (Config::read(path), &last_good) {
            (Ok((cfg, bytes)), _) => {
                if let Some(lg) = &last_good {
                    lg.save(&bytes);
                }
                (cfg, None)
            }
            (Err(e), Some(lg)) if lg.path().exists() => {
                let (cfg, _) = lg.load()?;
                tracing::error!(
                    error = %e,
                    fallback = %lg.path().display(),
                    "configuration refused; starting from the last accepted one"
                );
                (cfg, Some(e.to_string()))
            }
            (Err(e), _) => return Err(e.into()),
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Listen {
                path: path.to_path_buf(),
                addr: cfg.listen,
                source,
            })?;
        let local = listener.local_addr().unwrap_or(cfg.listen);
        tracing::info!(
            listen = %local,
            upstreams = %cfg.upstreams.join(","),
            check = if cfg.health.tls.is_some() { "https" } else { "tcp" },
            "listening"
        );
        let pool = Arc::new(Pool::new(cfg));
        let (rebind, rebound) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            pool: pool.clone(),
            local_addr: Mutex::new(local),
            config_error: Mutex::new(config_error),
            reload_now: Notify::new(),
            probe_now: Arc::new(Notify::new()),
            rebind,
            last_good,
        });
        let tasks = vec![
            tokio::spawn(forward::serve(listener, rebound, pool.clone())),
            tokio::spawn(probe::run(pool, shared.probe_now.clone())),
            tokio::spawn(reload::run(shared.clone(), options.reload_poll)),
        ];
        Ok(Proxy { shared, tasks })
    }

    /// The address it listens on now.
    pub fn local_addr(&self) -> SocketAddr {
        *self.shared.local_addr.lock().expect("addr lock")
    }

    /// Re-read the config file now (what SIGHUP does).
    pub fn reload(&self) {
        self.shared.reload_now.notify_one();
    }

    pub fn status(&self) -> Status {
        Status {
            listen: self.local_addr(),
            upstreams: self.shared.pool.status(),
            config_error: self.shared.config_error.lock().expect("error lock").clone(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
