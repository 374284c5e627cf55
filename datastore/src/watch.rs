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
//! has pushed all its events up to R into the stream. Watchers and progress
//! notifications take the stream's [`SendGate`] to send, so nothing of a
//! later revision can slip in between that check and the notification (etcd
//! gets the same from sending under its store lock).
//!
//! Memory stays bounded whatever the clients do, as in etcd: each watcher's
//! queue of live revisions is capped ([`MAX_QUEUED_REVS`], [`MAX_QUEUED_BYTES`]).
//! A watcher that falls that far behind (a client not reading its stream) is
//! marked *lagging*: the hub stops queueing for it, and once it has drained
//! its queue it catches up from RocksDB, like etcd's "unsynced" watchers. If
//! a compaction removed the history it needs meanwhile, it is cancelled with
//! the compacted revision, as etcd does.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::{Notify, mpsc};
use tonic::Status;

use crate::errors::EtcdError;
use crate::mvcc::{Mvcc, RangeEnd};
use crate::proto::{Event, EventType, ResponseHeader, WatchResponse};

/// Most live revisions queued for one watcher before it is left to catch
/// up from storage.
pub const MAX_QUEUED_REVS: usize = 1024;
/// Most bytes of events queued for one watcher (revisions are shared between
/// watchers, so this also bounds what the slowest watcher keeps alive).
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// All events of one revision, without `prev_kv`: a watcher that wants
/// it reads it from storage ([`fill_prev_kv`]), as etcd's watchers do.
pub struct RevEvents {
    pub rev: i64,
    pub events: Vec<Event>,
    /// Encoded size of `events`: what queueing it costs.
    pub bytes: usize,
}

#[derive(Clone)]
pub enum HubMsg {
    Events(Arc<RevEvents>),
}

/// One watcher's queue, as the hub and the watcher both see it.
#[derive(Default)]
struct QueueState {
    revs: AtomicUsize,
    bytes: AtomicUsize,
    /// Set by the hub when the queue is full (or the store was replaced):
    /// nothing more is queued until the watcher has caught up from storage.
    lagging: AtomicBool,
    wake: Notify,
}

impl QueueState {
    fn lag(&self) {
        self.lagging.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

struct Sub {
    tx: mpsc::UnboundedSender<HubMsg>,
    queue: Arc<QueueState>,
}

#[derive(Default)]
struct HubInner {
    subs: Vec<Sub>,
    published: i64,
}

/// Broadcasts committed revisions to every live watcher.
#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<HubInner>,
}

impl WatchHub {
    pub fn new(current: i64) -> Arc<Self> {
        Arc::new(WatchHub {
            inner: Mutex::new(HubInner {
                subs: Vec::new(),
                published: current,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscribe(&self) -> (mpsc::UnboundedReceiver<HubMsg>, Arc<QueueState>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(QueueState::default());
        self.lock().subs.push(Sub {
            tx,
            queue: queue.clone(),
        });
        (rx, queue)
    }

    /// Called by the state machine after the revision is durable in RocksDB.
    pub fn publish(&self, rev: i64, events: Vec<Event>) {
        let bytes = events.iter().map(|e| e.encoded_len()).sum();
        let msg = HubMsg::Events(Arc::new(RevEvents { rev, events, bytes }));
        let mut inner = self.lock();
        inner.published = rev;
        inner.subs.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            let q = &s.queue;
            if q.lagging.load(Ordering::Acquire) {
                return true;
            }
            let revs = q.revs.load(Ordering::Acquire);
            if revs >= MAX_QUEUED_REVS
                || (revs > 0 && q.bytes.load(Ordering::Acquire) + bytes > MAX_QUEUED_BYTES)
            {
                q.lag();
                return true;
            }
            q.revs.fetch_add(1, Ordering::AcqRel);
            q.bytes.fetch_add(bytes, Ordering::AcqRel);
            s.tx.send(msg.clone()).is_ok()
        });
    }

    /// The store was replaced (snapshot install): every watcher re-reads
    /// what it has not delivered yet from the new store.
    pub fn resync(&self, current: i64) {
        let mut inner = self.lock();
        inner.published = current;
        inner.subs.retain(|s| !s.tx.is_closed());
        for s in &inner.subs {
            s.queue.lag();
        }
    }

    /// Ends a watcher's lag: from now on revisions are queued for it again.
    /// Returns the last revision published, which it must read from storage.
    fn resume(&self, queue: &QueueState) -> i64 {
        let inner = self.lock();
        queue.lagging.store(false, Ordering::Release);
        inner.published
    }

    /// The last revision handed to watchers.
    pub fn published(&self) -> i64 {
        self.lock().published
    }

    pub fn watcher_count(&self) -> usize {
        self.lock()
            .subs
            .iter()
            .filter(|s| !s.tx.is_closed())
            .count()
    }

    /// Watchers currently catching up from storage (etcd's "slow" watchers).
    pub fn slow_watcher_count(&self) -> usize {
        self.lock()
            .subs
            .iter()
            .filter(|s| !s.tx.is_closed() && s.queue.lagging.load(Ordering::Acquire))
            .count()
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

/// One per gRPC stream: held while a response goes into the stream and the
/// sender's `delivered` revision moves, so a progress notification (sent
/// under it too) never overtakes or trails an event it claims to cover.
pub type SendGate = Arc<tokio::sync::Mutex<()>>;

/// The stream side of a running watcher.
pub struct WatcherHandle {
    pub id: i64,
    /// The watch's `start_revision` (0: from now on).
    pub start_rev: i64,
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
/// Largest encoded size of one replay response, give or take a revision:
/// keeps what a stream holds in memory, and what clients must accept
/// (tonic's default limit is 4 MiB), small.
const REPLAY_BATCH_BYTES: usize = 1 << 20;

struct Watcher {
    spec: WatchSpec,
    mvcc: Arc<Mvcc>,
    hub: Arc<WatchHub>,
    queue: Arc<QueueState>,
    out: Out,
    header: HeaderFn,
    gate: SendGate,
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

    /// The live events of one revision this watcher wants, with `prev_kv`
    /// read from storage if it asked for it.
    fn shape(&self, rev: i64, events: &[Event]) -> Result<Vec<Event>, EtcdError> {
        let mut out: Vec<Event> = events.iter().filter(|e| self.wants(e)).cloned().collect();
        if self.spec.prev_kv && !out.is_empty() {
            // A point read or two in RocksDB (memtable or block cache: the
            // version was written moments ago), so inline.
            let snap = self.mvcc.snapshot();
            for ev in &mut out {
                fill_prev_kv(&self.mvcc, &snap, rev, ev)?;
            }
        }
        Ok(out)
    }

    async fn send(&self, resp: WatchResponse) -> bool {
        let _gate = self.gate.lock().await;
        self.out.send(Ok(resp)).await.is_ok()
    }

    /// Sends `events` (if any) with a header at `rev` and records that
    /// everything up to `upto` is in the stream, both under the gate.
    async fn deliver(&self, rev: i64, events: Vec<Event>, upto: i64) -> bool {
        let _gate = self.gate.lock().await;
        if !events.is_empty() {
            let resp = WatchResponse {
                header: Some((self.header)(rev)),
                watch_id: self.spec.id,
                events,
                ..Default::default()
            };
            if self.out.send(Ok(resp)).await.is_err() {
                return false;
            }
        }
        self.delivered.fetch_max(upto, Ordering::AcqRel);
        true
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
            let chunk =
                tokio::task::spawn_blocking(move || -> Result<(Vec<Event>, i64), EtcdError> {
                    let snap = mvcc.snapshot();
                    let mut events = Vec::new();
                    let mut last_rev = next - 1;
                    let mut stop_after: Option<i64> = None;
                    let mut bytes = 0usize;
                    mvcc.history(&snap, next, to, |main, _sub, mut ev| {
                        if let Some(stop) = stop_after
                            && main > stop
                        {
                            return Ok(false);
                        }
                        last_rev = main;
                        let kv = ev.kv.as_ref().expect("history events carry a kv");
                        let keep = spec.end.contains(&spec.key, &kv.key)
                            && !(ev.r#type == EventType::Put as i32 && spec.no_put)
                            && !(ev.r#type == EventType::Delete as i32 && spec.no_delete);
                        if keep {
                            if spec.prev_kv {
                                fill_prev_kv(&mvcc, &snap, main, &mut ev)?;
                            }
                            bytes += ev.encoded_len();
                            events.push(ev);
                            if (events.len() >= REPLAY_BATCH || bytes >= REPLAY_BATCH_BYTES)
                                && stop_after.is_none()
                            {
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
                    let _ = self
                        .out
                        .send(Err(Status::internal(format!("watch replay failed: {e}"))))
                        .await;
                    return false;
                }
            };
            let rev = events
                .last()
                .and_then(|e| e.kv.as_ref())
                .map(|kv| kv.mod_revision)
                .unwrap_or(upto);
            if !self.deliver(rev, events, upto).await {
                return false;
            }
            next = upto + 1;
        }
        true
    }

    /// Catches a lagging watcher up from storage. Called only with an empty
    /// queue: while lagging nothing was queued, so after `resume` the queue
    /// holds exactly the revisions after the one returned.
    async fn catch_up(&self) -> bool {
        self.synced.store(false, Ordering::Release);
        let to = self.hub.resume(&self.queue);
        let from = (self.delivered.load(Ordering::Acquire) + 1).max(self.spec.start_rev);
        if !self.replay(from, to).await {
            return false;
        }
        self.delivered.fetch_max(to, Ordering::AcqRel);
        self.synced.store(true, Ordering::Release);
        true
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<HubMsg>, progress_every: Duration) {
        let r0 = self.mvcc.current_rev();
        let start = self.spec.start_rev;
        if start != 0 && start <= r0 {
            if !self.replay(start, r0).await {
                return;
            }
        } else {
            // Nothing to replay: events before `start` are never sent, so
            // everything up to `r0` is covered.
            self.delivered.fetch_max(r0, Ordering::AcqRel);
        }
        self.synced.store(true, Ordering::Release);
        let mut ticker = tokio::time::interval(progress_every);
        ticker.tick().await;
        // etcd skips a watcher's next periodic notification when events
        // went out since the last tick (they carry the revision already).
        let mut sent_since_tick = false;
        loop {
            if rx.is_empty() && self.queue.lagging.load(Ordering::Acquire) {
                if !self.catch_up().await {
                    return;
                }
                continue;
            }
            tokio::select! {
                msg = rx.recv() => {
                    let Some(HubMsg::Events(batch)) = msg else { return };
                    self.queue.revs.fetch_sub(1, Ordering::AcqRel);
                    self.queue.bytes.fetch_sub(batch.bytes, Ordering::AcqRel);
                    if batch.rev <= self.delivered.load(Ordering::Acquire) {
                        continue;
                    }
                    let events = if batch.rev < start {
                        Vec::new()
                    } else {
                        match self.shape(batch.rev, &batch.events) {
                            Ok(events) => events,
                            Err(e) => {
                                let _ = self.out.send(Err(Status::from(e))).await;
                                return;
                            }
                        }
                    };
                    sent_since_tick |= !events.is_empty();
                    if !self.deliver(batch.rev, events, batch.rev).await {
                        return;
                    }
                }
                // The hub marked this watcher lagging: re-check at the top.
                _ = self.queue.wake.notified() => {}
                _ = ticker.tick(), if self.spec.progress_notify => {
                    // etcd's `progressIfSync` for one watcher: only when it
                    // is synced and the revision has reached its start.
                    let rev = self.delivered.load(Ordering::Acquire);
                    if !std::mem::take(&mut sent_since_tick)
                        && rx.is_empty()
                        && !self.queue.lagging.load(Ordering::Acquire)
                        && rev >= start
                    {
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

/// Sets the `prev_kv` of an event of revision `rev`: the key as it was at
/// `rev - 1`, as etcd reads it. A create (version 1) never has one, even
/// when the key was deleted earlier in the same transaction, and none is
/// given once `rev - 1` is below the compaction (etcd's read fails there).
/// Live events and replayed history both come through here.
fn fill_prev_kv(
    mvcc: &Mvcc,
    snap: &crate::mvcc::Snapshot<'_>,
    rev: i64,
    ev: &mut Event,
) -> Result<(), EtcdError> {
    let Some(kv) = &ev.kv else { return Ok(()) };
    let is_create = ev.r#type == EventType::Put as i32 && kv.version == 1;
    if !is_create && rev > mvcc.compact_rev() {
        ev.prev_kv = mvcc.prev_kv(snap, &kv.key, rev)?;
    }
    Ok(())
}

/// Starts a watcher. The caller has already sent the `created` response.
pub fn spawn_watcher(
    mvcc: Arc<Mvcc>,
    hub: Arc<WatchHub>,
    spec: WatchSpec,
    out: Out,
    header: HeaderFn,
    gate: SendGate,
    progress_every: Duration,
) -> WatcherHandle {
    let (rx, queue) = hub.subscribe();
    let delivered = Arc::new(AtomicI64::new(0));
    // A watch from now on is synced from the start, as in etcd (its events
    // are queued from the subscription above); one from a revision is not
    // until its replay is done.
    let synced = Arc::new(AtomicBool::new(spec.start_rev == 0));
    let id = spec.id;
    let start_rev = spec.start_rev;
    let w = Watcher {
        spec,
        mvcc,
        hub,
        queue,
        out,
        header,
        gate,
        delivered: delivered.clone(),
        synced: synced.clone(),
    };
    let task = tokio::spawn(w.run(rx, progress_every));
    WatcherHandle {
        id,
        start_rev,
        delivered,
        synced,
        task,
    }
}
