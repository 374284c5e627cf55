//! Request/response over one long-lived bidirectional gRPC stream between
//! two members, many requests in flight, matched by request id: what etcd's
//! peer streams give it, without the per-call HEADERS, spawned tasks and
//! buffer hops of a unary gRPC call. Used for writes and read-index
//! requests a follower sends its leader ([`crate::forward`]) and for the
//! leader's Raft AppendEntries ([`crate::raft::network`]).
//!
//! The caller's side is a [`Stream`]; the callee serves it with [`serve`].

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

use crate::proto::peerpb::Blob;
use crate::raft::{decode, encode};

/// One message either way: a request or its reply, with the request's id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// Why a call got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The stream had ended before the request was handed to it: nothing
    /// was sent.
    NotSent,
    /// The stream ended while the request was in flight: the callee may or
    /// may not have acted on it.
    Lost,
    /// No reply within the caller's timeout.
    Timeout,
}

type Pending<R> = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<R>>>>>;

/// The caller's side of an open stream: requests `Q`, replies `R`.
pub struct Stream<Q, R> {
    tx: mpsc::UnboundedSender<Blob>,
    /// Requests sent and not answered yet; `None` once the stream ended.
    pending: Pending<R>,
    next_id: AtomicU64,
    _q: PhantomData<fn(Q)>,
}

impl<Q: Serialize, R: DeserializeOwned + Send + 'static> Stream<Q, R> {
    /// Opens a stream with `open` (the generated client's method, given the
    /// outbound message stream) and starts reading its replies.
    pub async fn open<F, Fut>(open: F, what: &'static str) -> Result<Arc<Self>, Status>
    where
        F: FnOnce(UnboundedReceiverStream<Blob>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<tonic::Streaming<Blob>>, Status>>,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbound = open(UnboundedReceiverStream::new(rx)).await?.into_inner();
        let pending: Pending<R> = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(read_replies(inbound, pending.clone(), what));
        Ok(Arc::new(Stream {
            tx,
            pending,
            next_id: AtomicU64::new(1),
            _q: PhantomData,
        }))
    }

    pub fn is_open(&self) -> bool {
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

    /// Sends `body` and waits up to `timeout` for its reply.
    pub async fn call(&self, body: Q, timeout: Duration) -> Result<R, CallError> {
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
            None => return Err(CallError::NotSent),
        }
        if self
            .tx
            .send(Blob {
                data: encode(&Envelope { id, body }),
            })
            .is_err()
        {
            self.forget(id);
            return Err(CallError::NotSent);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => {
                self.forget(id);
                Err(CallError::Timeout)
            }
        }
    }
}

/// Hands each reply to its caller; when the stream ends, the callers still
/// waiting get [`CallError::Lost`] (their reply senders are dropped).
async fn read_replies<R: DeserializeOwned>(
    mut inbound: tonic::Streaming<Blob>,
    pending: Pending<R>,
    what: &'static str,
) {
    loop {
        match inbound.message().await {
            Ok(Some(b)) => match decode::<Envelope<R>>(&b.data) {
                Ok(rep) => {
                    let w = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_mut()
                        .and_then(|m| m.remove(&rep.id));
                    if let Some(w) = w {
                        let _ = w.send(rep.body);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bad reply on the {what} stream");
                    break;
                }
            },
            Ok(None) => break,
            Err(s) => {
                tracing::debug!(error = %s, "{what} stream ended");
                break;
            }
        }
    }
    pending.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// The callee's side: runs `handle` on each request as it arrives (many at
/// once) and sends each reply when it is ready. The reply stream ends once
/// the caller closed its side and every request has been answered.
pub fn serve<Q, R, F, Fut>(
    mut inbound: tonic::Streaming<Blob>,
    handle: F,
) -> UnboundedReceiverStream<Result<Blob, Status>>
where
    Q: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => return,
            };
            let req: Envelope<Q> = match decode(&msg.data) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(Status::invalid_argument(e.to_string())));
                    return;
                }
            };
            let tx = tx.clone();
            let fut = handle(req.body);
            tokio::spawn(async move {
                let body = fut.await;
                let _ = tx.send(Ok(Blob {
                    data: encode(&Envelope { id: req.id, body }),
                }));
            });
        }
    });
    UnboundedReceiverStream::new(rx)
}
