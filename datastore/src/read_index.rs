//! Read-index batching on the leader. Every linearizable read needs the
//! leader to confirm, with a quorum round trip, that it still leads; under
//! load that would be one heartbeat round per read. Readers that arrive
//! while a confirmation is in flight wait for the *next* one, which starts
//! after they arrived, so each still gets a read index taken after its
//! request: linearizable, at one round trip per batch instead of per read.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::errors::EtcdError;
use crate::raft::Raft;

type Waiter = oneshot::Sender<Result<u64, EtcdError>>;

/// (a confirmation is in flight, readers waiting for the next one)
type State = Arc<Mutex<(bool, Vec<Waiter>)>>;

#[derive(Default)]
pub struct ReadIndexBatcher {
    state: State,
}

impl ReadIndexBatcher {
    /// The log index a read must wait for, confirmed by a quorum.
    pub async fn read_index(&self, raft: &Raft) -> Result<u64, EtcdError> {
        let (tx, rx) = oneshot::channel();
        let drive = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.1.push(tx);
            !std::mem::replace(&mut s.0, true)
        };
        if drive {
            tokio::spawn(Self::drive(self.state.clone(), raft.clone()));
        }
        rx.await.map_err(|_| EtcdError::LeaderChanged)?
    }

    async fn drive(state: State, raft: Raft) {
        loop {
            let batch = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.1.is_empty() {
                    s.0 = false;
                    return;
                }
                std::mem::take(&mut s.1)
            };
            let res = match raft.get_read_log_id().await {
                Ok((read, _applied)) => Ok(read.map(|l| l.index).unwrap_or(0)),
                Err(_) => Err(EtcdError::NotLeaderRetry),
            };
            for w in batch {
                let _ = w.send(res.clone());
            }
        }
    }
}
