//! Write forwarding from a follower to the leader over one long-lived
//! bidirectional gRPC stream (`Peer/ForwardStream`), as etcd forwards
//! proposals on its long-lived peer streams.
//!
//! Each client write on a follower becomes one [`ForwardRequest`] message
//! with a request id; many are in flight at once on the same stream. The
//! leader proposes each through its group commit and answers, in whatever
//! order they finish, with the write's result and the log index of the
//! entry that carried it ([`ForwardReply`]). The follower answers its
//! client only once its *own* state machine has applied that index, so a
//! client that then reads or watches on the same member sees its write
//! (read-your-writes, as etcd: its follower answers after its own apply).
//!
//! What a client gets when leadership moves:
//! - the message reached a member that no longer leads: it proposes
//!   nothing and says so ([`EtcdError::NotLeaderRetry`]); the follower
//!   forwards again to the new leader;
//! - the stream could not be opened, or was closed before the write was
//!   handed to it: nothing was sent, the follower forwards again;
//! - the stream broke while the write was in flight: it may or may not
//!   have been committed, so it is never sent again (it could be applied
//!   twice); the client gets etcd's answer for that case, `etcdserver:
//!   request timed out, possibly due to previous leader failure`;
//! - the leader proposed it but lost leadership before it committed:
//!   `etcdserver: leader changed`, as before.
//!
//! A leader of an older version answers UNIMPLEMENTED: the follower then
//! uses the unary `Peer/Forward` call with that leader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::errors::EtcdError;
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::raft::proposer::Applied;
use crate::raft::{Command, decode, encode};

/// What a follower asks of the leader on its stream.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardOp {
    /// A client write: answered with its result and its entry's index.
    Write(Command),
    /// A quorum-confirmed read index (for linearizable reads on the
    /// follower): answered with [`CommandResult::None`](crate::raft::CommandResult)
    /// and the index.
    ReadIndex,
}

/// One request, follower to leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub id: u64,
    pub op: ForwardOp,
}

/// The leader's answer: the command's result and the log index of its
/// entry, or why it was not committed.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardReply {
    pub id: u64,
    pub res: Result<Applied, EtcdError>,
}

type Waiter = oneshot::Sender<Result<Applied, EtcdError>>;
/// Writes sent and not answered yet; `None` once the stream has ended.
type Pending = Arc<Mutex<Option<HashMap<u64, Waiter>>>>;

/// One open stream to a leader.
pub struct Stream {
    tx: mpsc::UnboundedSender<Blob>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Stream {
    fn is_open(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn forget(&self, id: u64) {
        if let Some(m) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            m.remove(&id);
        }
    }
}

enum Slot {
    Empty,
    Open {
        leader: u64,
        url: String,
        stream: Arc<Stream>,
    },
    /// That leader (at that URL) has no `ForwardStream`: an older version.
    Unsupported {
        leader: u64,
        url: String,
    },
}

/// What [`ForwardStreams::stream`] found for a leader.
pub enum Route {
    Stream(Arc<Stream>),
    /// Use the unary `Peer/Forward` call.
    Unary,
}

/// A member's stream to the current leader (at most one: a stream to a
/// former leader is dropped when the first write goes to the new one, and
/// ends once its writes in flight are answered).
pub struct ForwardStreams {
    slot: tokio::sync::Mutex<Slot>,
}

impl Default for ForwardStreams {
    fn default() -> Self {
        ForwardStreams {
            slot: tokio::sync::Mutex::new(Slot::Empty),
        }
    }
}

/// What a failed attempt to open the stream means: nothing was sent, so
/// the write may go again (to the current leader).
fn open_error(s: &tonic::Status, leader: u64) -> EtcdError {
    match s.code() {
        tonic::Code::Unavailable => EtcdError::NoLeader,
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => EtcdError::NoLeader,
        _ => EtcdError::Internal(format!(
            "opening the forwarding stream to leader {leader:x}: {}",
            s.message()
        )),
    }
}

impl ForwardStreams {
    /// The open stream to `leader` at `url`, opened with `client` if needed.
    pub async fn stream(
        &self,
        leader: u64,
        url: &str,
        mut client: PeerClient<Channel>,
        timeout: Duration,
    ) -> Result<Route, EtcdError> {
        let mut slot = self.slot.lock().await;
        match &*slot {
            Slot::Open {
                leader: l,
                url: u,
                stream,
            } if *l == leader && u == url && stream.is_open() => {
                return Ok(Route::Stream(stream.clone()));
            }
            Slot::Unsupported { leader: l, url: u } if *l == leader && u == url => {
                return Ok(Route::Unary);
            }
            _ => {}
        }
        *slot = Slot::Empty;
        let (tx, rx) = mpsc::unbounded_channel();
        let opened = tokio::time::timeout(
            timeout,
            client.forward_stream(UnboundedReceiverStream::new(rx)),
        )
        .await;
        let inbound = match opened {
            Err(_) => return Err(EtcdError::NoLeader),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                *slot = Slot::Unsupported {
                    leader,
                    url: url.to_string(),
                };
                return Ok(Route::Unary);
            }
            Ok(Err(s)) => return Err(open_error(&s, leader)),
            Ok(Ok(r)) => r.into_inner(),
        };
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(read_replies(inbound, pending.clone(), leader));
        let stream = Arc::new(Stream {
            tx,
            pending,
            next_id: AtomicU64::new(1),
        });
        *slot = Slot::Open {
            leader,
            url: url.to_string(),
            stream: stream.clone(),
        };
        Ok(Route::Stream(stream))
    }
}

impl Stream {
    /// Sends `op` and waits for the leader's answer.
    pub async fn send(&self, op: ForwardOp, timeout: Duration) -> Result<Applied, EtcdError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(m) => {
                m.insert(id, tx);
            }
            // Ended before this request was handed to it: nothing was sent.
            None => return Err(EtcdError::NotLeaderRetry),
        }
        let msg = Blob {
            data: encode(&ForwardRequest { id, op }),
        };
        if self.tx.send(msg).is_err() {
            self.forget(id);
            return Err(EtcdError::NotLeaderRetry);
        }
        // The leader times its proposal out after `timeout` and says so;
        // the margin lets its answer arrive first.
        match tokio::time::timeout(timeout + Duration::from_millis(500), rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(EtcdError::TimeoutLeaderFail),
            Err(_) => {
                self.forget(id);
                Err(EtcdError::Timeout)
            }
        }
    }
}

/// Hands each reply to its writer; when the stream ends, every write still
/// in flight gets etcd's "possibly due to previous leader failure" timeout
/// (its fate is unknown, so it must not be sent again).
async fn read_replies(mut inbound: tonic::Streaming<Blob>, pending: Pending, leader: u64) {
    loop {
        match inbound.message().await {
            Ok(Some(b)) => match decode::<ForwardReply>(&b.data) {
                Ok(rep) => {
                    let w = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_mut()
                        .and_then(|m| m.remove(&rep.id));
                    if let Some(w) = w {
                        let _ = w.send(rep.res);
                    }
                }
                Err(e) => {
                    tracing::warn!(leader = %format!("{leader:x}"), error = %e, "bad reply on the forwarding stream");
                    break;
                }
            },
            Ok(None) => break,
            Err(s) => {
                tracing::debug!(leader = %format!("{leader:x}"), error = %s, "forwarding stream ended");
                break;
            }
        }
    }
    let left = pending.lock().unwrap_or_else(|p| p.into_inner()).take();
    for (_, w) in left.into_iter().flatten() {
        let _ = w.send(Err(EtcdError::TimeoutLeaderFail));
    }
}
