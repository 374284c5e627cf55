//! `etcdserverpb.Watch`: one task per gRPC stream handles create, cancel
//! and progress requests; each watcher runs as its own task (see
//! [`crate::watch`]) and writes into the stream's outbound queue.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::errors::EtcdError;
use crate::leadership::{has_leader, requires_leader};
use crate::member::Node;
use crate::mvcc::RangeEnd;
use crate::proto::watch_create_request::FilterType;
use crate::proto::watch_server::Watch;
use crate::proto::{WatchRequest, WatchResponse, watch_request};
use crate::watch::{HeaderFn, SendGate, WatchSpec, WatcherHandle, spawn_watcher};

pub struct WatchService {
    pub node: Arc<Node>,
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

/// Responses queued per stream before its watchers wait (etcd: 128).
const OUTBOUND_RESPONSES: usize = 128;

struct StreamState {
    node: Arc<Node>,
    out: Out,
    header: HeaderFn,
    gate: SendGate,
    watchers: HashMap<i64, WatcherHandle>,
    next_id: i64,
    progress_pending: bool,
}

impl StreamState {
    async fn send(&self, r: WatchResponse) -> bool {
        let _gate = self.gate.lock().await;
        self.out.send(Ok(r)).await.is_ok()
    }

    async fn handle(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id == 0 {
                    while self.watchers.contains_key(&self.next_id) {
                        self.next_id += 1;
                    }
                    self.next_id += 1;
                    self.next_id - 1
                } else {
                    c.watch_id
                };
                let cur = self.node.mvcc.current_rev();
                if c.watch_id != 0 && self.watchers.contains_key(&id) {
                    return self
                        .send(WatchResponse {
                            header: Some((self.header)(cur)),
                            watch_id: id,
                            created: true,
                            canceled: true,
                            cancel_reason: "mvcc: duplicate watch ID".into(),
                            ..Default::default()
                        })
                        .await;
                }
                if !self
                    .send(WatchResponse {
                        header: Some((self.header)(cur)),
                        watch_id: id,
                        created: true,
                        ..Default::default()
                    })
                    .await
                {
                    return false;
                }
                let spec = WatchSpec {
                    id,
                    key: c.key.clone(),
                    end: RangeEnd::from_wire(&c.range_end),
                    start_rev: c.start_revision,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&(FilterType::Noput as i32)),
                    no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
                    progress_notify: c.progress_notify,
                };
                let h = spawn_watcher(
                    self.node.mvcc.clone(),
                    self.node.hub.clone(),
                    spec,
                    self.out.clone(),
                    self.header.clone(),
                    self.gate.clone(),
                    self.node.progress_every,
                );
                self.watchers.insert(id, h);
                true
            }
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if let Some(h) = self.watchers.remove(&c.watch_id) {
                    h.stop();
                    let cur = self.node.mvcc.current_rev();
                    return self
                        .send(WatchResponse {
                            header: Some((self.header)(cur)),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        })
                        .await;
                }
                true
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                if self.progress_pending {
                    return true;
                }
                // etcd 3.6's `progressIfSync` (watchable_store.go): no
                // answer at all when the stream has no watcher, when one is
                // still catching up (replaying history or lagging), or when
                // one waits for a revision the store has not reached. The
                // request is dropped, not kept: kube-apiserver asks again.
                self.watchers.retain(|_, h| !h.is_finished());
                let rev = self.node.hub.published();
                if self.watchers.is_empty()
                    || self
                        .watchers
                        .values()
                        .any(|h| !h.synced.load(Ordering::Acquire) || h.start_rev > rev)
                {
                    return true;
                }
                self.progress_pending = true;
                self.try_progress().await
            }
            None => true,
        }
    }

    /// Sends an accepted RequestProgress (`watch_id` -1, which the client
    /// hands to every watcher of the stream) at the current revision, once
    /// every watcher has pushed its events up to that revision into the
    /// stream: the events etcd would already have in its send queue. Under
    /// the stream's gate, so no later event goes out before it.
    async fn try_progress(&mut self) -> bool {
        if !self.progress_pending {
            return true;
        }
        // Busy: a watcher is sending (maybe to a client that does not
        // read); the stream's tick tries again.
        let Ok(gate) = self.gate.clone().try_lock_owned() else {
            return true;
        };
        self.watchers.retain(|_, h| !h.is_finished());
        let rev = self.node.hub.published();
        if !self
            .watchers
            .values()
            .all(|h| h.delivered.load(Ordering::Acquire) >= rev)
        {
            return true;
        }
        self.progress_pending = false;
        let sent = self
            .out
            .send(Ok(WatchResponse {
                header: Some((self.header)(rev)),
                watch_id: -1,
                ..Default::default()
            }))
            .await
            .is_ok();
        drop(gate);
        sent
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // `clientv3.WithRequireLeader` (kube-apiserver sets it on every
        // watch): refuse without a leader, and end the stream if the leader
        // is lost, so the client reconnects to a member that has one.
        let require_leader = requires_leader(req.metadata());
        if require_leader && !has_leader(&self.node) {
            return Err(EtcdError::NoLeader.into());
        }
        let mut inbound = req.into_inner();
        // Small on purpose: a client that does not read holds at most this
        // many responses here; its watchers then lag (see `crate::watch`).
        let (tx, rx) = mpsc::channel(OUTBOUND_RESPONSES);
        let node = self.node.clone();
        let hn = node.clone();
        let header: HeaderFn = Arc::new(move |rev| hn.header(rev));
        let mut state = StreamState {
            node,
            out: tx.clone(),
            header,
            gate: SendGate::default(),
            watchers: HashMap::new(),
            next_id: 0,
            progress_pending: false,
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut leader_check =
                tokio::time::interval((state.node.leader_wait / 3).max(Duration::from_millis(50)));
            let mut leaderless_checks = 0;
            loop {
                tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(req)) => {
                            if !state.handle(req).await {
                                break;
                            }
                        }
                        _ => break,
                    },
                    _ = tick.tick(), if state.progress_pending => {
                        if !state.try_progress().await {
                            break;
                        }
                    }
                    _ = leader_check.tick(), if require_leader => {
                        leaderless_checks = if has_leader(&state.node) { 0 } else { leaderless_checks + 1 };
                        // Three checks in a row, like etcd's monitorLeader.
                        if leaderless_checks >= 3 {
                            let _ = tx.send(Err(EtcdError::NoLeader.into())).await;
                            break;
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
