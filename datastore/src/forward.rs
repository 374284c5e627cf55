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

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::errors::EtcdError;
use crate::peer_stream::CallError;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::raft::Command;
use crate::raft::proposer::Applied;

/// What a follower asks of the leader on its stream.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardOp {
    /// A client write: answered with its result and its entry's index.
    Write(Command),
    /// A quorum-confirmed read index (for linearizable reads on the
    /// follower, which has applied up to `applied`): answered with
    /// [`CommandResult::None`](crate::raft::CommandResult) and the index.
    ReadIndex { applied: u64 },
}

/// The leader's answer: the result and the log index of the entry, or why
/// the request was not carried out.
pub type ForwardResult = Result<Applied, EtcdError>;

/// An open forwarding stream.
pub struct Stream(Arc<crate::peer_stream::Stream<ForwardOp, ForwardResult>>);

impl Stream {
    /// Sends `op` and waits for the leader's answer.
    pub async fn send(&self, op: ForwardOp, timeout: Duration) -> Result<Applied, EtcdError> {
        // The leader times its proposal out after `timeout` and says so;
        // the margin lets its answer arrive first.
        match self.0.call(op, timeout + Duration::from_millis(500)).await {
            Ok(res) => res,
            // Nothing was sent: safe to send again, to the current leader.
            Err(CallError::NotSent) => Err(EtcdError::NotLeaderRetry),
            // Its fate is unknown: never sent again (it could apply twice).
            Err(CallError::Lost) => Err(EtcdError::TimeoutLeaderFail),
            Err(CallError::Timeout) => Err(EtcdError::Timeout),
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
/// former leader is dropped when the first request goes to the new one,
/// and ends once its requests in flight are answered).
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
/// the request may go again (to the current leader).
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
            } if *l == leader && u == url && stream.0.is_open() => {
                return Ok(Route::Stream(stream.clone()));
            }
            Slot::Unsupported { leader: l, url: u } if *l == leader && u == url => {
                return Ok(Route::Unary);
            }
            _ => {}
        }
        *slot = Slot::Empty;
        let opened = tokio::time::timeout(
            timeout,
            crate::peer_stream::Stream::open(|out| client.forward_stream(out), "forwarding"),
        )
        .await;
        let stream = match opened {
            Err(_) => return Err(EtcdError::NoLeader),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                *slot = Slot::Unsupported {
                    leader,
                    url: url.to_string(),
                };
                return Ok(Route::Unary);
            }
            Ok(Err(s)) => return Err(open_error(&s, leader)),
            Ok(Ok(s)) => Arc::new(Stream(s)),
        };
        *slot = Slot::Open {
            leader,
            url: url.to_string(),
            stream: stream.clone(),
        };
        Ok(Route::Stream(stream))
    }
}
