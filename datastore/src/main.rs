//! `k8sup-datastore`: run a member, save a snapshot, or restore one.

use std::io::IsTerminal;

use clap::Parser;
use k8sup_datastore::config::{Cli, RestoreArgs, SaveArgs, SnapshotOp, Sub};
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

async fn snapshot_save(a: SaveArgs) -> anyhow::Result<()> {
    let mut ep = tonic::transport::Endpoint::from_shared(a.tls.endpoints.clone())
        .map_err(|e| anyhow::anyhow!("--endpoints {}: {e}", a.tls.endpoints))?;
    if a.tls.endpoints.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &a.tls.cacert {
            let pem =
                std::fs::read(ca).map_err(|e| anyhow::anyhow!("--cacert {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&a.tls.cert, &a.tls.key) {
            let cert =
                std::fs::read(c).map_err(|e| anyhow::anyhow!("--cert {}: {e}", c.display()))?;
            let key =
                std::fs::read(k).map_err(|e| anyhow::anyhow!("--key {}: {e}", k.display()))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        ep = ep.tls_config(tls)?;
    }
    let chan = ep
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", a.tls.endpoints))?;
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
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k8sup-datastore: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
