//! Starting a member: identity (member and cluster IDs, persisted in
//! `member.json`), stores, Raft, the client/peer/metrics listeners, and
//! graceful shutdown on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::transport::{ClientTlsConfig, Server, ServerTlsConfig};

use crate::coalesce::Coalesce;
use crate::config::{ServerArgs, listen_addr, parse_initial_cluster, split_urls};
use crate::grpc::{
    cluster::ClusterService, kv::KvService, lease::LeaseService, maintenance::MaintenanceService,
    peer::PeerService, watch::WatchService,
};
use crate::h2authority::AuthorityFix;
use crate::lease::LeaseClock;
use crate::limits::Limits;
use crate::member::{LeaderCall, LeaderReply, Node, cluster_id, member_id};
use crate::mvcc::Mvcc;
use crate::proto::cluster_server::ClusterServer;
use crate::proto::kv_server::KvServer;
use crate::proto::lease_server::LeaseServer;
use crate::proto::maintenance_server::MaintenanceServer;
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_server::PeerServer;
use crate::proto::watch_server::WatchServer;
use crate::raft::log_store::LogStore;
use crate::raft::network::{MAX_PEER_MESSAGE, Network, PeerClients};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Member, Raft, decode, encode};
use crate::watch::WatchHub;

/// Who this member is, fixed at first start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    pub name: String,
}

pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member.json")
}

pub fn save_identity(data_dir: &Path, id: &Identity) -> anyhow::Result<()> {
    let raw = serde_json::to_vec_pretty(id)?;
    crate::durable::write_file(&identity_path(data_dir), &raw)
        .with_context(|| format!("writing {}", identity_path(data_dir).display()))
}

fn load_identity(data_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let p = identity_path(data_dir);
    match std::fs::read(&p) {
        Ok(raw) => Ok(Some(
            serde_json::from_slice(&raw).with_context(|| format!("{} is corrupt", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", p.display())),
    }
}

fn same_urls(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Asks the members listed in `--initial-cluster` who we are (after `member add`).
async fn discover(
    peers: &PeerClients,
    cluster: &[(String, Vec<String>)],
    mine: &[String],
    args: &ServerArgs,
) -> anyhow::Result<Identity> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last_err = String::from("no other member listed in --initial-cluster");
    loop {
        for (_, urls) in cluster {
            if same_urls(urls, mine) {
                continue;
            }
            let Ok(mut client) = peers.client(&urls[0]) else {
                continue;
            };
            let mut req = tonic::Request::new(Blob {
                data: encode(&LeaderCall::ClusterInfo),
            });
            req.set_timeout(Duration::from_secs(3));
            match client.leader_call(req).await {
                Ok(r) => match decode::<Result<LeaderReply, crate::errors::EtcdError>>(
                    &r.into_inner().data,
                )? {
                    Ok(LeaderReply::ClusterInfo {
                        cluster_id,
                        members,
                    }) => {
                        if let Some((id, _, _)) = members
                            .iter()
                            .find(|(_, m, _)| same_urls(&m.peer_urls, mine))
                        {
                            return Ok(Identity {
                                member_id: *id,
                                cluster_id,
                                name: args.name.clone(),
                            });
                        }
                        last_err = format!(
                            "member at {} does not list peer URLs {mine:?}: run `etcdctl member add {} --peer-urls={}` first",
                            urls[0],
                            args.name,
                            mine.join(",")
                        );
                    }
                    Ok(other) => last_err = format!("unexpected reply {other:?}"),
                    Err(e) => last_err = e.to_string(),
                },
                Err(e) => last_err = format!("{}: {}", urls[0], e.message()),
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "--initial-cluster-state existing: could not learn this member's ID: {last_err}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Any client connection: TLS-terminated or plaintext (`--insecure`).
trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> ClientIo for T {}

type ClientConn = AuthorityFix<Coalesce<Box<dyn ClientIo>>>;

/// Accepts client connections, terminates TLS (mutual, CA-checked) and
/// wraps each in the `:authority` repair (see [`crate::h2authority`]) over
/// the write coalescing (see [`crate::coalesce`]).
fn client_connections(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<ClientConn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let (sock, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a client connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = sock.set_nodelay(true);
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let io: Box<dyn ClientIo> = match acceptor {
                    Some(acc) => {
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock)).await
                        {
                            Ok(Ok(s)) => Box::new(s),
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "client TLS handshake refused");
                                return;
                            }
                            Err(_) => {
                                tracing::info!(%peer, "client TLS handshake timed out");
                                return;
                            }
                        }
                    }
                    None => Box::new(sock),
                };
                let _ = tx.send(Ok(AuthorityFix::new(Coalesce::new(io)))).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Runs a member until SIGTERM/SIGINT.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating --data-dir {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", data_dir.display()))?;
    }

    // Listeners and TLS.
    let client_urls = split_urls(&args.listen_client_urls);
    let peer_listen = split_urls(&args.listen_peer_urls);
    let advertise_client = args
        .advertise_client_urls
        .as_deref()
        .map(split_urls)
        .unwrap_or_else(|| client_urls.clone());
    let my_peer_urls = args
        .initial_advertise_peer_urls
        .as_deref()
        .map(split_urls)
        .unwrap_or_else(|| peer_listen.clone());
    let mut client_addrs = Vec::new();
    for u in &client_urls {
        let (addr, tls) = listen_addr(u, "listen-client-urls")?;
        if !tls && !args.insecure {
            anyhow::bail!(
                "--listen-client-urls {u}: plaintext is refused; use https:// with --cert-file/--key-file/--trusted-ca-file (or --insecure for tests)"
            );
        }
        client_addrs.push((addr, tls));
    }
    let mut peer_addrs = Vec::new();
    for u in &peer_listen {
        let (addr, tls) = listen_addr(u, "listen-peer-urls")?;
        if !tls && !args.insecure {
            anyhow::bail!(
                "--listen-peer-urls {u}: plaintext is refused; use https:// with --peer-cert-file/--peer-key-file/--peer-trusted-ca-file (or --insecure for tests)"
            );
        }
        peer_addrs.push((addr, tls));
    }
    let client_tls: Option<Arc<rustls::ServerConfig>> = if client_addrs.iter().any(|(_, t)| *t) {
        Some(Arc::new(crate::tls::client_listener(
            args.cert_file.as_deref(),
            args.key_file.as_deref(),
            args.trusted_ca_file.as_deref(),
            args.client_cert_auth,
        )?))
    } else {
        None
    };
    let (peer_server_tls, peer_client_tls): (Option<ServerTlsConfig>, Option<ClientTlsConfig>) =
        if peer_addrs.iter().any(|(_, t)| *t)
            || my_peer_urls.iter().any(|u| u.starts_with("https://"))
        {
            let (Some(c), Some(k), Some(ca)) = (
                &args.peer_cert_file,
                &args.peer_key_file,
                &args.peer_trusted_ca_file,
            ) else {
                anyhow::bail!(
                    "https peer URLs need --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (peer traffic is always mutual TLS)"
                );
            };
            (
                Some(crate::tls::server(
                    Some(c),
                    Some(k),
                    Some(ca),
                    true,
                    "peer-",
                )?),
                Some(crate::tls::peer_client(c, k, ca)?),
            )
        } else {
            (None, None)
        };
    let peers = PeerClients::new(peer_client_tls);

    // Identity.
    let initial = parse_initial_cluster(&args.initial_cluster.clone().unwrap_or_else(|| {
        format!(
            "{}={}",
            args.name,
            my_peer_urls.join(&format!(",{}=", args.name))
        )
    }))?;
    // With `--initial-cluster-state new`, the initial members (IDs derived
    // from peer URLs and token, as etcd does) bootstrap an empty Raft log.
    // This also covers a data directory made by `restore`. A member that
    // already has an identity does not need to find itself there: like
    // etcd, it ignores `--initial-cluster` (its peer URLs may have moved
    // with `member update`).
    let stored = load_identity(&data_dir)?;
    let bootstrap: Option<(u64, BTreeMap<u64, Member>, u64)> = if args.initial_cluster_state
        == "new"
    {
        let ids: Vec<(u64, String, Vec<String>)> = initial
            .iter()
            .map(|(n, urls)| {
                (
                    member_id(urls, &args.initial_cluster_token, None),
                    n.clone(),
                    urls.clone(),
                )
            })
            .collect();
        match ids
            .iter()
            .find(|(_, _, urls)| same_urls(urls, &my_peer_urls))
        {
            Some(me) => {
                let cid = cluster_id(
                    &ids.iter().map(|(i, _, _)| *i).collect::<Vec<_>>(),
                    &args.initial_cluster_token,
                );
                let members = ids
                    .iter()
                    .map(|(id, n, urls)| {
                        (
                            *id,
                            Member {
                                name: n.clone(),
                                peer_urls: urls.clone(),
                                client_urls: Vec::new(),
                            },
                        )
                    })
                    .collect();
                Some((me.0, members, cid))
            }
            None if stored.is_some() => None,
            None => anyhow::bail!(
                "--initial-cluster has no entry whose peer URLs are {my_peer_urls:?} (--initial-advertise-peer-urls); add `{}={}`",
                args.name,
                my_peer_urls.join(",")
            ),
        }
    } else {
        None
    };
    let identity = match stored {
        Some(id) => id,
        None => match &bootstrap {
            Some((me, _, cid)) => Identity {
                member_id: *me,
                cluster_id: *cid,
                name: args.name.clone(),
            },
            None => discover(&peers, &initial, &my_peer_urls, &args).await?,
        },
    };
    let bootstrap = bootstrap
        .filter(|(me, _, _)| *me == identity.member_id)
        .map(|(_, m, _)| m);
    save_identity(&data_dir, &identity)?;
    tracing::info!(member_id = format!("{:x}", identity.member_id), cluster_id = format!("{:x}", identity.cluster_id), name = %identity.name, data_dir = %data_dir.display(), "starting member");

    // Stores and Raft.
    let mvcc = Mvcc::open(&data_dir.join("kv"))?;
    let metrics = crate::raft::types::ServerMetrics::default();
    let log = LogStore::open(&data_dir.join("raft"), metrics.clone())?;
    let hub = WatchHub::new(mvcc.current_rev());
    let leases = Arc::new(LeaseClock::default());
    let (compact_tx, mut compact_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    // Session 2 kept the last snapshot whole in `snapshot.bin`; it now
    // lives in `snapshots/` as files (see `raft::state_machine`).
    let _ = std::fs::remove_file(data_dir.join("snapshot.bin"));
    let sm = StateMachine::new(
        mvcc.clone(),
        hub.clone(),
        leases.clone(),
        compact_tx,
        data_dir.join("snapshots"),
    )
    .map_err(|e| anyhow::anyhow!("opening the state machine: {e}"))?;
    let config = openraft::Config {
        cluster_name: args.initial_cluster_token.clone(),
        // openraft 0.9 gives every AppendEntries exactly one heartbeat
        // interval to complete, then resends the same entries at once. At
        // etcd's 100 ms a follower starved of CPU for a moment (or busy
        // with a catch-up message) never answers in time and replication
        // loops on timeouts: `check perf` on a loaded machine showed dozens
        // a minute and requests timing out. A quarter of the election
        // timeout keeps four heartbeats per election timeout; commits
        // still reach followers at once (openraft pushes them).
        heartbeat_interval: args.heartbeat_interval.max(args.election_timeout / 4),
        election_timeout_min: args.election_timeout,
        election_timeout_max: args.election_timeout * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(args.snapshot_count),
        max_in_snapshot_log_to_keep: args.experimental_snapshot_catchup_entries,
        purge_batch_size: 256,
        install_snapshot_timeout: 30_000,
        snapshot_max_chunk_size: 8 << 20,
        // Entries are group-committed batches (up to 256 KiB each, see
        // raft::proposer): 16 keeps a catch-up append at a few MiB, which a
        // follower can take within one heartbeat interval even when busy.
        max_payload_entries: 16,
        ..Default::default()
    }
    .validate()
    .context("Raft timing flags")?;
    let raft = Raft::new(
        identity.member_id,
        Arc::new(config),
        Network {
            peers: peers.clone(),
            membership: metrics.clone(),
        },
        log.clone(),
        sm,
    )
    .await
    .context("starting Raft")?;
    let _ = metrics.set(raft.server_metrics());
    if let Some(members) = bootstrap
        && !raft.is_initialized().await?
        && let Err(e) = raft.initialize(members).await
    {
        tracing::warn!(error = %e, "initializing the cluster (already initialized elsewhere?)");
    }

    let node = Arc::new(Node {
        id: identity.member_id,
        cluster_id: identity.cluster_id,
        name: identity.name.clone(),
        token: args.initial_cluster_token.clone(),
        client_urls: advertise_client,
        raft: raft.clone(),
        mvcc: mvcc.clone(),
        hub,
        leases,
        peers,
        log,
        leader_wait: Duration::from_millis(args.election_timeout * 3),
        progress_every: args.experimental_watch_progress_notify_interval,
        request_timeout: Duration::from_secs(7),
        read_index: Default::default(),
        proposer: Default::default(),
        forwarder: Default::default(),
    });

    // Background work.
    {
        let mvcc = mvcc.clone();
        tokio::spawn(async move {
            while let Some(mut target) = compact_rx.recv().await {
                while let Ok(t) = compact_rx.try_recv() {
                    target = target.max(t);
                }
                let m = mvcc.clone();
                match tokio::task::spawn_blocking(move || m.physical_compact(target)).await {
                    Ok(Ok(n)) => {
                        tracing::info!(revision = target, removed = n, "compaction finished")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(revision = target, error = %e, "compaction failed")
                    }
                    Err(e) => tracing::error!(error = %e, "compaction task panicked"),
                }
            }
        });
    }
    tokio::spawn(node.clone().run_lease_expiry());
    let limits = Limits::new(
        args.max_request_bytes,
        args.quota_backend_bytes,
        mvcc.clone(),
    );
    let health_service = crate::health::serve(node.clone());
    tokio::spawn(node.clone().run_publish());

    // Listeners.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for (addr, tls) in client_addrs {
        let mut b = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        let n = node.clone();
        let max_msg = limits.grpc_max_message();
        let router = b
            .add_service(health_service.clone())
            .add_service(
                KvServer::new(KvService {
                    node: n.clone(),
                    limits: limits.clone(),
                })
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                WatchServer::new(WatchService { node: n.clone() })
                    .max_decoding_message_size(max_msg)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(LeaseServer::new(LeaseService {
                node: n.clone(),
                limits: limits.clone(),
            }))
            .add_service(ClusterServer::new(ClusterService { node: n.clone() }))
            .add_service(
                MaintenanceServer::new(MaintenanceService {
                    node: n.clone(),
                    limits: limits.clone(),
                })
                .max_encoding_message_size(usize::MAX),
            );
        let mut rx = stop_rx.clone();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding client listener {addr}"))?;
        tracing::info!(%addr, tls, "serving clients");
        let incoming = client_connections(
            listener,
            if tls { client_tls.clone() } else { None },
            stop_rx.clone(),
        );
        servers.push(tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.changed().await;
                })
                .await
        }));
    }
    let snapshots = Arc::new(crate::grpc::peer::SnapshotReceiver::new(
        data_dir.join("snapshots"),
    ));
    for (addr, tls) in peer_addrs {
        let mut b = Server::builder().tcp_nodelay(true);
        if tls {
            b = b.tls_config(peer_server_tls.clone().expect("peer TLS configured"))?;
        }
        let router = b.add_service(
            PeerServer::new(PeerService {
                node: node.clone(),
                snapshots: snapshots.clone(),
            })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE),
        );
        let mut rx = stop_rx.clone();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding peer listener {addr}"))?;
        tracing::info!(%addr, tls, "serving peers");
        servers.push(tokio::spawn(async move {
            // Nagle off on accepted peer sockets too (`Server::tcp_nodelay` only covers `serve`): 40 ms stalls otherwise.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.changed().await;
                })
                .await
        }));
    }
    for u in split_urls(&args.listen_metrics_urls) {
        let (addr, tls) = listen_addr(&u, "listen-metrics-urls")?;
        if tls {
            anyhow::bail!("--listen-metrics-urls {u}: the metrics endpoint serves plain http only");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics listener {addr}"))?;
        let app = crate::http::router(node.clone(), limits.clone());
        let mut rx = stop_rx.clone();
        tracing::info!(%addr, "serving /metrics and /health");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await;
        });
    }

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    let _ = raft.shutdown().await;
    if let Err(e) = node.log.save_committed_now() {
        tracing::warn!(error = %e, "storing the committed log id at shutdown");
    }
    mvcc.db().flush_wal(true).ok();
    tracing::info!("stopped");
    Ok(())
}
