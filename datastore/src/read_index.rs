//! Read-index batching. Every linearizable read needs the leader to
//! confirm, with a quorum round trip, that it still leads; under load that
//! would be one heartbeat round per read. Readers that arrive while a
//! confirmation is in flight wait for the *next* one, which starts after
//! they arrived, so each still gets a read index taken after its request:
//! linearizable, at one round trip per batch instead of per read.
//!
//! The same batching runs on both sides: on the leader the confirmation is
//! openraft's heartbeat round, on a follower it is one `ReadIndex` call to
//! the leader, shared by every read that queued meanwhile (and batched again
//! on the leader with the other members' reads).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::errors::EtcdError;

type Waiter = oneshot::Sender<Result<u64, EtcdError>>;

/// (a confirmation is in flight, readers waiting for the next one)
type State = Arc<Mutex<(bool, Vec<Waiter>)>>;

#[derive(Default)]
pub struct ReadIndexBatcher {
    state: State,
}

impl ReadIndexBatcher {
    /// The log index a read must wait for. `confirm` fetches one read index
    /// (a quorum-confirmed one); it is used if this call starts a new round
    /// of confirmations, else the running round's is used.
    pub async fn read_index<F, Fut>(&self, confirm: F) -> Result<u64, EtcdError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, EtcdError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let drive = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.1.push(tx);
            !std::mem::replace(&mut s.0, true)
        };
        if drive {
            tokio::spawn(Self::drive(self.state.clone(), confirm));
        }
        rx.await.map_err(|_| EtcdError::LeaderChanged)?
    }

    async fn drive<F, Fut>(state: State, confirm: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, EtcdError>>,
    {
        loop {
            let batch = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.1.is_empty() {
                    s.0 = false;
                    return;
                }
                std::mem::take(&mut s.1)
            };
            let res = confirm().await;
            let failed = res.is_err();
            for w in batch {
                let _ = w.send(res.clone());
            }
            if failed {
                // The leader this round asked may be gone: fail everyone
                // queued too (they retry against the current leader) and
                // let the next reader start a round with a fresh `confirm`.
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                for w in std::mem::take(&mut s.1) {
                    let _ = w.send(res.clone());
                }
                s.0 = false;
                return;
            }
        }
    }
}
