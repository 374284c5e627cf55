//! The watch hub: fans every committed revision out to watchers, and the
//! per-watcher task that replays history and then follows live events.
//!
//! Gap-free, duplicate-free hand-over (the kine recipe): a watcher
//! subscribes to the hub *first*, then reads the current revision `r0` and
//! replays `[start, r0]` from RocksDB, then drops any live revision `<= r0`.
//!
//! Every watcher sees every revision (as an `Arc`, so this is cheap) and
//! filters by range itself; that lets it track the revision it has fully
//! delivered, which is what makes `RequestProgress` honest: a progress
//! notification for revision R is only sent once every watcher on the stream
//! has pushed all its events up to R into the stream.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use crate::errors::EtcdError;
use crate::mvcc::{Mvcc, RangeEnd};
use crate::proto::{Event, EventType, ResponseHeader, WatchResponse};

/// All events of one revision, with `prev_kv` filled in.
pub struct RevEvents {
    pub rev: i64,
    pub events: Vec<Event>,
}

#[derive(Clone)]
pub enum HubMsg {
    Events(Arc<RevEvents>),
    /// The store was replaced (snapshot install): re-read history.
    Resync,
}

#[derive(Default)]
struct HubInner {
    subs: Vec<mpsc::UnboundedSender<HubMsg>>,
    published: i64,
}

/// Broadcasts committed revisions to every live watcher.
#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<HubInner>,
}

impl WatchHub {
    pub fn new(current: i64) -> Arc<Self> {
        Arc::new(WatchHub { inner: Mutex::new(HubInner { subs: Vec::new(), published: current }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<HubMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subs.push(tx);
        rx
    }

    /// Called by the state machine after the revision is durable in RocksDB.
    pub fn publish(&self, rev: i64, events: Vec<Event>) {
        let msg = HubMsg::Events(Arc::new(RevEvents { rev, events }));
        let mut inner = self.lock();
        inner.published = rev;
        inner.subs.retain(|tx| tx.send(msg.clone()).is_ok());
    }

    pub fn resync(&self, current: i64) {
        let mut inner = self.lock();
        inner.published = current;
        inner.subs.retain(|tx| tx.send(HubMsg::Resync).is_ok());
    }

    /// The last revision handed to watchers.
    pub fn published(&self) -> i64 {
        self.lock().published
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().subs.len()
    }
}

/// What a watch create request asked for.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub id: i64,
    pub key: Vec<u8>,
    pub end: RangeEnd,
    pub start_rev: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
}

/// Builds response headers (cluster/member ids, raft term) for a revision.
pub type HeaderFn = Arc<dyn Fn(i64) -> ResponseHeader + Send + Sync>;

/// The stream side of a running watcher.
pub struct WatcherHandle {
    pub id: i64,
    /// Highest revision whose events this watcher has pushed to the stream.
    pub delivered: Arc<AtomicI64>,
    pub synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl WatcherHandle {
    pub fn stop(&self) {
        self.task.abort();
    }

    /// True once the watcher ended by itself (stream gone, compacted).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

/// Largest number of events per replay response (a revision is never split).
const REPLAY_BATCH: usize = 1000;

struct Watcher {
    spec: WatchSpec,
    mvcc: Arc<Mvcc>,
    out: Out,
    header: HeaderFn,
    delivered: Arc<AtomicI64>,
    synced: Arc<AtomicBool>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if !self.spec.end.contains(&self.spec.key, &kv.key) {
            return false;
        }
        let is_put = ev.r#type == EventType::Put as i32;
        !(is_put && self.spec.no_put || !is_put && self.spec.no_delete)
    }

    fn shape(&self, ev: &Event) -> Event {
        let mut ev = ev.clone();
        if !self.spec.prev_kv {
            ev.prev_kv = None;
        }
        ev
    }

    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn send_events(&self, rev: i64, events: Vec<Event>) -> bool {
        if events.is_empty() {
            return true;
        }
        self.send(WatchResponse { header: Some((self.header)(rev)), watch_id: self.spec.id, events, ..Default::default() })
            .await
    }

    /// Replays `[from, to]`. Returns false if the stream is gone or the
    /// watcher was cancelled for compaction.
    async fn replay(&self, from: i64, to: i64) -> bool {
        if from > to {
            return true;
        }
        let compacted = self.mvcc.compact_rev();
        if from < compacted {
            let resp = WatchResponse {
                header: Some((self.header)(self.mvcc.current_rev())),
                watch_id: self.spec.id,
                canceled: true,
                compact_revision: compacted,
                ..Default::default()
            };
            self.send(resp).await;
            return false;
        }
        let mut next = from;
        while next <= to {
            let mvcc = self.mvcc.clone();
            let spec = self.spec.clone();
            let chunk = tokio::task::spawn_blocking(move || -> Result<(Vec<Event>, i64), EtcdError> {
                let snap = mvcc.snapshot();
                let mut events = Vec::new();
                let mut last_rev = next - 1;
                let mut stop_after: Option<i64> = None;
                mvcc.history(&snap, next, to, |main, _sub, mut ev| {
                    if let Some(stop) = stop_after
                        && main > stop {
                            return Ok(false);
                        }
                    last_rev = main;
                    let kv = ev.kv.as_ref().expect("history events carry a kv");
                    let keep = spec.end.contains(&spec.key, &kv.key)
                        && !(ev.r#type == EventType::Put as i32 && spec.no_put)
                        && !(ev.r#type == EventType::Delete as i32 && spec.no_delete);
                    if keep {
                        // etcd reads the previous version at `rev - 1`, which
                        // fails (no prev_kv) once that is below the compaction.
                        let is_create = ev.r#type == EventType::Put as i32 && kv.version == 1;
                        if spec.prev_kv && !is_create && main > mvcc.compact_rev() {
                            ev.prev_kv = mvcc.prev_kv(&snap, &kv.key.clone(), main)?;
                        }
                        events.push(ev);
                        if events.len() >= REPLAY_BATCH && stop_after.is_none() {
                            stop_after = Some(main);
                        }
                    }
                    Ok(true)
                })?;
                Ok((events, if stop_after.is_some() { last_rev } else { to }))
            })
            .await;
            let (events, upto) = match chunk {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    let _ = self.out.send(Err(Status::from(e))).await;
                    return false;
                }
                Err(e) => {
                    let _ = self.out.send(Err(Status::internal(format!("watch replay failed: {e}")))).await;
                    return false;
                }
            };
            let rev = events.last().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).unwrap_or(upto);
            if !self.send_events(rev, events).await {
                return false;
            }
            self.delivered.store(upto, Ordering::Release);
            next = upto + 1;
        }
        true
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<HubMsg>, progress_every: Duration) {
        let r0 = self.mvcc.current_rev();
        let start = self.spec.start_rev;
        // Events before `start` are never sent; `delivered` tracks what is covered.
        self.delivered.store(r0, Ordering::Release);
        if start != 0 && start <= r0 && !self.replay(start, r0).await {
            return;
        }
        self.synced.store(true, Ordering::Release);
        let mut ticker = tokio::time::interval(progress_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    match msg {
                        HubMsg::Events(batch) => {
                            if batch.rev <= self.delivered.load(Ordering::Acquire) {
                                continue;
                            }
                            let events: Vec<Event> = if batch.rev < start {
                                Vec::new()
                            } else {
                                batch.events.iter().filter(|e| self.wants(e)).map(|e| self.shape(e)).collect()
                            };
                            if !self.send_events(batch.rev, events).await {
                                return;
                            }
                            self.delivered.store(batch.rev, Ordering::Release);
                        }
                        HubMsg::Resync => {
                            self.synced.store(false, Ordering::Release);
                            let from = (self.delivered.load(Ordering::Acquire) + 1).max(start);
                            let to = self.mvcc.current_rev();
                            if !self.replay(from, to).await {
                                return;
                            }
                            self.delivered.store(to, Ordering::Release);
                            self.synced.store(true, Ordering::Release);
                        }
                    }
                }
                _ = ticker.tick(), if self.spec.progress_notify => {
                    if rx.is_empty() {
                        let rev = self.delivered.load(Ordering::Acquire);
                        let resp = WatchResponse { header: Some((self.header)(rev)), watch_id: self.spec.id, ..Default::default() };
                        if !self.send(resp).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Starts a watcher. The caller has already sent the `created` response.
pub fn spawn_watcher(
    mvcc: Arc<Mvcc>,
    hub: &WatchHub,
    spec: WatchSpec,
    out: Out,
    header: HeaderFn,
    progress_every: Duration,
) -> WatcherHandle {
    let rx = hub.subscribe();
    let delivered = Arc::new(AtomicI64::new(0));
    let synced = Arc::new(AtomicBool::new(false));
    let id = spec.id;
    let w = Watcher { spec, mvcc, out, header, delivered: delivered.clone(), synced: synced.clone() };
    let task = tokio::spawn(w.run(rx, progress_every));
    WatcherHandle { id, delivered, synced, task }
}
