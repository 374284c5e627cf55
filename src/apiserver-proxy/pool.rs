//! The upstreams in the configured order, each with its health, and the
//! configuration they came from. Shared by the listener (which picks),
//! the health checker (which judges) and the reloader (which replaces).
//!
//! Balancing is "first usable in order": every new connection goes to the
//! first upstream that is not down, the next ones only when it fails. A
//! node's kubelet and kube-proxy thus stay on one kube-apiserver (one watch
//! cache, one log to read when debugging), and come back to it when it
//! recovers. Load is spread across control planes by the order k8sup
//! writes: each worker gets the list rotated by its position, so workers
//! prefer different control planes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::Config;
use crate::health::{Change, Health, State};

/// One control plane's kube-apiserver.
#[derive(Debug)]
pub struct Upstream {
    pub addr: String,
    health: Mutex<Health>,
    /// Woken when the upstream is marked down, so its connections can close.
    pub(crate) down: Notify,
    /// Connections to it open now.
    pub(crate) active: Arc<AtomicUsize>,
}

impl Upstream {
    fn new(addr: String) -> Upstream {
        Upstream {
            addr,
            health: Mutex::new(Health::default()),
            down: Notify::new(),
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn state(&self) -> State {
        self.health.lock().expect("health lock").state
    }
}

/// What `status()` reports for one upstream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamStatus {
    pub addr: String,
    pub state: State,
    /// Why it last failed, while that is still its state's cause.
    pub reason: Option<String>,
    pub connections: usize,
}

#[derive(Debug)]
pub struct Pool {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    upstreams: Vec<Arc<Upstream>>,
}

impl Pool {
    pub fn new(config: Config) -> Pool {
        let upstreams = config
            .upstreams
            .iter()
            .map(|a| Arc::new(Upstream::new(a.clone())))
            .collect();
        Pool {
            inner: Mutex::new(Inner {
                config: Arc::new(config),
                upstreams,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("pool lock")
    }

    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    /// Every configured upstream, in order (what the checker probes).
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.lock().upstreams.clone()
    }

    /// The upstreams a new connection may try, in order.
    pub fn candidates(&self) -> Vec<Arc<Upstream>> {
        self.lock()
            .upstreams
            .iter()
            .filter(|u| u.state().usable())
            .cloned()
            .collect()
    }

    /// Take a new configuration. An upstream kept by address keeps its
    /// health and its connections; a removed one is no longer chosen or
    /// probed, and its open connections run until their ends close them.
    /// Returns the added and removed addresses.
    pub fn replace(&self, config: Config) -> (Vec<String>, Vec<String>) {
        let mut inner = self.lock();
        let old = std::mem::take(&mut inner.upstreams);
        let upstreams: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|a| {
                old.iter()
                    .find(|u| &u.addr == a)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Upstream::new(a.clone())))
            })
            .collect();
        let added = config
            .upstreams
            .iter()
            .filter(|a| !old.iter().any(|u| &&u.addr == a))
            .cloned()
            .collect();
        let removed = old
            .iter()
            .filter(|u| !config.upstreams.contains(&u.addr))
            .map(|u| u.addr.clone())
            .collect();
        inner.upstreams = upstreams;
        inner.config = Arc::new(config);
        (added, removed)
    }

    /// Record a health probe's result.
    pub fn probed(&self, up: &Upstream, result: Result<(), String>) {
        let cfg = self.config();
        let change = {
            let mut h = up.health.lock().expect("health lock");
            match result {
                Ok(()) => h.success(cfg.health.rise),
                Err(reason) => h.failure(cfg.health.fall, reason),
            }
        };
        self.changed(up, change, "health check", &cfg);
    }

    /// A client's connection could not reach `up`: down at once.
    pub fn refused(&self, up: &Upstream, reason: String) {
        let cfg = self.config();
        let change = up.health.lock().expect("health lock").refused(reason);
        self.changed(up, change, "connection", &cfg);
    }

    fn changed(&self, up: &Upstream, change: Option<Change>, by: &str, cfg: &Config) {
        let Some(Change { from, to }) = change else {
            return;
        };
        let reason = up.health.lock().expect("health lock").reason.clone();
        match to {
            State::Down => {
                let open = up.active.load(Ordering::Relaxed);
                tracing::warn!(
                    upstream = %up.addr,
                    %from,
                    reason = reason.as_deref().unwrap_or("-"),
                    by,
                    "upstream is down; new connections go to the next one in order"
                );
                if cfg.close_connections_on_down && open > 0 {
                    tracing::info!(upstream = %up.addr, connections = open, "closing its connections so clients reconnect to a healthy upstream");
                    up.down.notify_waiters();
                }
            }
            _ => tracing::info!(upstream = %up.addr, %from, %to, by, "upstream is up"),
        }
        if !self.lock().upstreams.iter().any(|u| u.state().usable()) {
            tracing::error!(
                "no upstream is healthy: new connections are closed until one recovers"
            );
        }
    }

    /// Every upstream's state, in order.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.upstreams()
            .iter()
            .map(|u| {
                let h = u.health.lock().expect("health lock");
                UpstreamStatus {
                    addr: u.addr.clone(),
                    state: h.state,
                    reason: h.reason.clone(),
                    connections: u.active.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
