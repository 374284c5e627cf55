//! Group commit: client writes that arrive while earlier ones are being
//! replicated share one Raft entry ([`Command::Batch`]).
//!
//! openraft 0.9 appends every `client_write` as its own entry and waits for
//! that entry's log fsync inside its core loop, so one proposal per request
//! costs one fsync, one replication message and one state-machine write per
//! request, serially. Here each request is queued; one "flight" at a time
//! takes everything queued so far and sends it on as one unit. At one
//! client a flight carries one request (no added latency); under load a
//! flight carries every request that arrived during the previous round trip.
//! Each command in a batch is still applied on its own, in order, with its
//! own revision and its own response, exactly as if proposed alone.
//!
//! The same queue runs twice per member: on the leader its flights propose
//! to Raft; on a follower they forward to the leader in one peer call
//! (where the commands join the leader's queue).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::types::{Command, CommandResult, Entry, EntryPayload};
use crate::errors::EtcdError;

/// Flights in the air at once: one, so that everything that arrives while
/// a batch is being committed rides in the next batch, one Raft entry per
/// round trip (etcd batches proposals per Raft `Ready` the same way).
///
/// More flights looked like pipelining but split the queue into several
/// small entries, and openraft 0.9 pays for each entry alone: its core loop
/// appends and fsyncs an entry before it takes the next message, replicates
/// with one AppendEntries in flight per follower, and sends a separate
/// commit message and apply per entry. Measured (release, 3 members on
/// loopback, puts to the leader, load average 4-6), one flight against
/// four: 1,539/s against 912/s at 4 clients, 4,919/s against 2,321/s at
/// 16, 11,631/s against 7,149/s at 64, 21,265/s against 8,898/s at 512
/// (p99 39 ms against 211 ms); two flights fell in between at every point.
const MAX_FLIGHTS: usize = 1;
/// Upper bound of commands in one batch, so an entry stays a reasonable
/// peer message and a slow batch does not hold too many clients.
const MAX_BATCH: usize = 1024;
/// Upper bound of the encoded request bytes in one batch (a single larger
/// request still travels alone). With openraft's `max_payload_entries` of
/// 16 (see `server.rs`) one append message stays at a few MiB, far below
/// the peer message limit ([`super::network::MAX_PEER_MESSAGE`]) and
/// quick to take, even when a follower catches up on full batches.
const MAX_BATCH_BYTES: usize = 256 << 10;

/// A command's outcome and the log index of the entry that carried it (0
/// where unknown: the leader's answer over the older unary forwarding).
pub type Applied = (CommandResult, u64);

type Waiter = oneshot::Sender<Result<Applied, EtcdError>>;

/// What a flight's `send` returns: one result per command, or an error for
/// the whole batch (then nothing of it was applied).
pub type BatchResult = Result<Vec<Result<Applied, EtcdError>>, EtcdError>;

#[derive(Default)]
struct Queue {
    pending: Vec<(Command, Waiter)>,
    flights: usize,
}

/// A write queue whose flights are spawned on demand and end when it is
/// empty.
#[derive(Default)]
pub struct WriteQueue {
    queue: Arc<Mutex<Queue>>,
}

/// Rough size of a log entry: its command's [`weight`], or 64 for the
/// rest (membership, blank). Bounds what one AppendEntries carries on the
/// shared stream (`network`) and what the log's tail keeps (`log_tail`).
pub(crate) fn entry_weight(e: &Entry) -> usize {
    match &e.payload {
        EntryPayload::Normal(cmd) => weight(cmd),
        _ => 64,
    }
}

/// Rough size of a command in the log, for the batch byte bound.
pub(crate) fn weight(cmd: &Command) -> usize {
    match cmd {
        Command::Put(b) | Command::DeleteRange(b) | Command::Txn(b) => b.len(),
        Command::Batch(cmds) => cmds.iter().map(weight).sum(),
        _ => 64,
    }
}

/// One command as itself, several as a [`Command::Batch`].
pub fn pack(mut cmds: Vec<Command>) -> Command {
    if cmds.len() == 1 {
        cmds.pop().expect("one command")
    } else {
        Command::Batch(cmds)
    }
}

/// The results of [`pack`]ed commands, one per command. Errors of getting
/// a command committed (not leader, no leader, leader changed, timeout),
/// which a leader answering a forwarded batch reports per command, come
/// back as errors as if the command had been forwarded alone; everything
/// else is the command's own outcome (applying never yields those four).
pub fn unpack(
    n: usize,
    res: CommandResult,
) -> Result<Vec<Result<CommandResult, EtcdError>>, EtcdError> {
    let route = |r: CommandResult| match r {
        CommandResult::Err(
            e @ (EtcdError::NotLeaderRetry
            | EtcdError::NoLeader
            | EtcdError::LeaderChanged
            | EtcdError::Timeout
            | EtcdError::TimeoutLeaderFail),
        ) => Err(e),
        r => Ok(r),
    };
    match res {
        CommandResult::Batch(results) if results.len() == n => {
            Ok(results.into_iter().map(route).collect())
        }
        CommandResult::Batch(results) => Err(EtcdError::Internal(format!(
            "a batch of {n} writes came back with {} results",
            results.len()
        ))),
        res if n == 1 => Ok(vec![route(res)]),
        other => Err(EtcdError::Internal(format!(
            "a batch of {n} writes came back as {other:?}"
        ))),
    }
}

impl WriteQueue {
    /// Queues `cmd`; `send` delivers a batch (at most [`MAX_FLIGHTS`] at a
    /// time) and returns one result per command. `send` is used if this
    /// call starts a flight, else a running flight's is used.
    pub async fn submit<F, Fut>(&self, cmd: Command, send: F) -> Result<Applied, EtcdError>
    where
        F: Fn(Vec<Command>) -> Fut + Send + 'static,
        Fut: Future<Output = BatchResult> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.pending.push((cmd, tx));
            let start = q.flights < MAX_FLIGHTS;
            if start {
                q.flights += 1;
            }
            start
        };
        if start {
            tokio::spawn(Self::fly(self.queue.clone(), send));
        }
        rx.await.map_err(|_| EtcdError::LeaderChanged)?
    }

    /// Takes the head of the queue (bounded by count and bytes); an empty
    /// result ends the flight.
    fn take(queue: &Mutex<Queue>) -> Vec<(Command, Waiter)> {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = 0;
        let mut n = 0;
        for (cmd, _) in &q.pending {
            bytes += weight(cmd);
            if n > 0 && (n == MAX_BATCH || bytes > MAX_BATCH_BYTES) {
                break;
            }
            n += 1;
        }
        if n == 0 {
            q.flights -= 1;
            return Vec::new();
        }
        let rest = q.pending.split_off(n);
        std::mem::replace(&mut q.pending, rest)
    }

    async fn fly<F, Fut>(queue: Arc<Mutex<Queue>>, send: F)
    where
        F: Fn(Vec<Command>) -> Fut,
        Fut: Future<Output = BatchResult>,
    {
        loop {
            let batch = Self::take(&queue);
            if batch.is_empty() {
                return;
            }
            let (cmds, waiters): (Vec<Command>, Vec<Waiter>) = batch.into_iter().unzip();
            let n = waiters.len();
            match send(cmds).await {
                Ok(results) if results.len() == n => {
                    for (w, r) in waiters.into_iter().zip(results) {
                        let _ = w.send(r);
                    }
                }
                Ok(results) => {
                    let e = EtcdError::Internal(format!(
                        "a batch of {n} writes came back with {} results",
                        results.len()
                    ));
                    for w in waiters {
                        let _ = w.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for w in waiters {
                        let _ = w.send(Err(e.clone()));
                    }
                    // This flight's target (leader) may be gone. Hand what
                    // is queued back to its writers, unsent, so they retry
                    // against the current leader with a fresh flight.
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    for (_, w) in std::mem::take(&mut q.pending) {
                        let _ = w.send(Err(EtcdError::NotLeaderRetry));
                    }
                    q.flights -= 1;
                    return;
                }
            }
        }
    }
}

/// A member's two write queues: what it proposes as leader (its own
/// clients' writes and those followers forward to it), and what it forwards
/// to the leader as a follower.
#[derive(Default)]
pub struct Proposer {
    pub local: WriteQueue,
    pub forward: WriteQueue,
}
