//! `k8sup-datastore`: run a member, save a snapshot, or restore one.

use std::io::IsTerminal;

use clap::Parser;
use k8sup_datastore::config::{
    Cli, ClientTls, GetArgs, MemberOp, PutArgs, RestoreArgs, SaveArgs, SnapshotOp, Sub,
};
use k8sup_datastore::durable::AtomicFile;
use k8sup_datastore::proto::SnapshotRequest;
use k8sup_datastore::proto::maintenance_client::MaintenanceClient;

fn init_logs(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},openraft=warn")
    })
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A gRPC channel to `--endpoints`, with the client's TLS settings.
async fn channel(t: &ClientTls) -> anyhow::Result<tonic::transport::Channel> {
    let mut ep = tonic::transport::Endpoint::from_shared(t.endpoints.clone())
        .map_err(|e| anyhow::anyhow!("--endpoints {}: {e}", t.endpoints))?;
    if t.endpoints.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &t.cacert {
            let pem =
                std::fs::read(ca).map_err(|e| anyhow::anyhow!("--cacert {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&t.cert, &t.key) {
            let cert =
                std::fs::read(c).map_err(|e| anyhow::anyhow!("--cert {}: {e}", c.display()))?;
            let key =
                std::fs::read(k).map_err(|e| anyhow::anyhow!("--key {}: {e}", k.display()))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        ep = ep.tls_config(tls)?;
    }
    ep.connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", t.endpoints))
}

/// `member list|add|promote`: what etcdctl's `member` does, so that k8sup
/// can join a member from the host itself (no etcdctl there).
async fn member(op: MemberOp) -> anyhow::Result<()> {
    use k8sup_datastore::proto::cluster_client::ClusterClient;
    use k8sup_datastore::proto::{MemberAddRequest, MemberListRequest, MemberPromoteRequest};
    let tls = match &op {
        MemberOp::List(a) => &a.tls,
        MemberOp::Add(a) => &a.tls,
        MemberOp::Promote(a) => &a.tls,
    };
    let mut client = ClusterClient::new(channel(tls).await?);
    let members = client
        .member_list(MemberListRequest { linearizable: true })
        .await?
        .into_inner()
        .members;
    let urls = |s: &str| -> Vec<String> { k8sup_datastore::config::split_urls(s) };
    match op {
        MemberOp::List(_) => {
            for m in &members {
                println!(
                    "{:x} {} {} {} {}",
                    m.id,
                    if m.name.is_empty() { "-" } else { &m.name },
                    m.peer_ur_ls.join(","),
                    if m.is_learner { "learner" } else { "voter" },
                    if m.client_ur_ls.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                );
            }
        }
        MemberOp::Add(a) => {
            let want = urls(&a.peer_urls);
            if members.iter().any(|m| m.peer_ur_ls == want) {
                println!("{} ({}) is already a member", a.name, a.peer_urls);
                return Ok(());
            }
            let r = client
                .member_add(MemberAddRequest {
                    peer_ur_ls: want,
                    is_learner: a.learner,
                })
                .await?
                .into_inner();
            let id = r.member.map(|m| m.id).unwrap_or_default();
            println!(
                "added {} ({}) as {} {id:x}",
                a.name,
                a.peer_urls,
                if a.learner { "learner" } else { "voter" }
            );
        }
        MemberOp::Promote(a) => {
            let want = urls(&a.peer_urls);
            let Some(m) = members.iter().find(|m| m.peer_ur_ls == want) else {
                anyhow::bail!("no member has peer URLs {}", a.peer_urls);
            };
            if !m.is_learner {
                println!("{} is already a voter", a.peer_urls);
                return Ok(());
            }
            client
                .member_promote(MemberPromoteRequest { id: m.id })
                .await?;
            println!("promoted {} ({:x})", a.peer_urls, m.id);
        }
    }
    Ok(())
}

/// `get KEY`: the value's bytes on stdout, nothing when there is no such key.
async fn get(a: GetArgs) -> anyhow::Result<()> {
    use k8sup_datastore::proto::RangeRequest;
    use k8sup_datastore::proto::kv_client::KvClient;
    use std::io::Write;
    let mut kv = KvClient::new(channel(&a.tls).await?);
    let r = kv
        .range(RangeRequest {
            key: a.name.into_bytes(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if let Some(v) = r.kvs.first() {
        out.write_all(&v.value)?;
    }
    out.flush()?;
    Ok(())
}

/// `put KEY [--from-file FILE]`: the key set to the file's (or stdin's) bytes.
async fn put(a: PutArgs) -> anyhow::Result<()> {
    use k8sup_datastore::proto::PutRequest;
    use k8sup_datastore::proto::kv_client::KvClient;
    let value = match &a.from_file {
        Some(f) => std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        None => {
            use std::io::Read;
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    let mut kv = KvClient::new(channel(&a.tls).await?);
    let r = kv
        .put(PutRequest {
            key: a.name.clone().into_bytes(),
            value,
            ..Default::default()
        })
        .await?
        .into_inner();
    let rev = r.header.map(|h| h.revision).unwrap_or_default();
    println!("put {} at revision {rev}", a.name);
    Ok(())
}

async fn snapshot_save(a: SaveArgs) -> anyhow::Result<()> {
    let chan = channel(&a.tls).await?;
    let mut client = MaintenanceClient::new(chan).max_decoding_message_size(usize::MAX);
    let mut stream = client.snapshot(SnapshotRequest {}).await?.into_inner();
    // Written as it arrives (a snapshot is as large as the database), then
    // checked whole before it takes the final name.
    let mut out = AtomicFile::create(&a.file)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", a.file.display()))?;
    let part = out.part_path().to_path_buf();
    let mut size = 0u64;
    while let Some(msg) = stream.message().await? {
        use std::io::Write;
        out.write_all(&msg.blob)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", part.display()))?;
        size += msg.blob.len() as u64;
    }
    out.commit_checked(|p| {
        k8sup_datastore::snapshot::open_verified(p)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("snapshot from {}: {e}", a.tls.endpoints))
    })
    .map_err(|e| anyhow::anyhow!("saving {}: {e:#}", a.file.display()))?;
    println!("Snapshot saved at {} ({size} bytes)", a.file.display());
    Ok(())
}

fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    use k8sup_datastore::{
        member, mvcc::Mvcc, raft::state_machine::StateMachine, server, snapshot,
    };
    // Checked whole before anything is created.
    snapshot::open_verified(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    if a.data_dir.exists() {
        anyhow::bail!(
            "--data-dir {} already exists; restore only creates a new data directory",
            a.data_dir.display()
        );
    }
    std::fs::create_dir_all(&a.data_dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mvcc = Mvcc::open(&a.data_dir.join("kv"))?;
    snapshot::load_file(&mvcc, &a.file)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", a.file.display()))?;
    StateMachine::clear_raft_position(&mvcc).map_err(|e| anyhow::anyhow!("{e}"))?;
    mvcc.db().flush_wal(true)?;
    let urls = k8sup_datastore::config::split_urls(&a.initial_advertise_peer_urls);
    let id = member::member_id(&urls, &a.initial_cluster_token, None);
    let identity = server::Identity {
        member_id: id,
        cluster_id: member::cluster_id(&[id], &a.initial_cluster_token),
        name: a.name.clone(),
    };
    server::save_identity(&a.data_dir, &identity)?;
    println!(
        "Restored revision {} into {}; start it with --data-dir {} --name {} --initial-advertise-peer-urls {} --initial-cluster {}={} --initial-cluster-token {}",
        mvcc.current_rev(),
        a.data_dir.display(),
        a.data_dir.display(),
        a.name,
        a.initial_advertise_peer_urls,
        a.name,
        a.initial_advertise_peer_urls,
        a.initial_cluster_token
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.server.log_level, &cli.server.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let res = match cli.command {
        None => rt.block_on(k8sup_datastore::server::run(cli.server)),
        Some(Sub::Snapshot {
            op: SnapshotOp::Save(a),
        }) => rt.block_on(snapshot_save(a)),
        Some(Sub::Restore(a)) => restore(a),
        Some(Sub::Member { op }) => rt.block_on(member(op)),
        Some(Sub::Get(a)) => rt.block_on(get(a)),
        Some(Sub::Put(a)) => rt.block_on(put(a)),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k8sup-datastore: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
