//! Command-line flags. They take etcd's names wherever the concept is the
//! same, so a 3-member cluster starts with the same command lines as etcd's.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "k8sup-datastore",
    version,
    about = "A Raft-replicated key-value store on RocksDB that speaks the etcd v3 API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Sub>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Snapshot operations against a running member.
    Snapshot {
        #[command(subcommand)]
        op: SnapshotOp,
    },
    /// Create the data directory of a new one-member cluster from a snapshot file.
    Restore(RestoreArgs),
    /// Membership operations against a running cluster (etcdctl's `member`).
    Member {
        #[command(subcommand)]
        op: MemberOp,
    },
    /// Print one key's value, byte for byte, with nothing added (nothing
    /// when the key does not exist; etcdctl's `get --print-value-only`).
    /// A linearizable read.
    Get(GetArgs),
    /// Set one key to the bytes of a file (or of stdin), as etcdctl's `put`.
    Put(PutArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (named `name` here: `--key` is the client key's flag).
    #[arg(value_name = "KEY")]
    pub name: String,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key (named `name` here: `--key` is the client key's flag).
    #[arg(value_name = "KEY")]
    pub name: String,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Subcommand)]
pub enum MemberOp {
    /// One line per member: ID, name (empty until it first starts), peer
    /// URLs, `learner` or `voter`, `started` or `unstarted`.
    List(MemberListArgs),
    /// Add a member (as a learner with --learner: it replicates but does
    /// not vote until promoted). Does nothing if one with these peer URLs exists.
    Add(MemberAddArgs),
    /// Make the learner with these peer URLs a voting member.
    Promote(MemberPromoteArgs),
}

#[derive(Debug, Args)]
pub struct MemberListArgs {
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Args)]
pub struct MemberAddArgs {
    /// The new member's name (as its --name).
    pub name: String,
    /// Its peer URLs, comma separated (as its --initial-advertise-peer-urls).
    #[arg(long)]
    pub peer_urls: String,
    /// Add it as a learner (non-voting until `member promote`).
    #[arg(long)]
    pub learner: bool,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Args)]
pub struct MemberPromoteArgs {
    /// The learner's peer URLs, comma separated (IDs change between runs; URLs do not).
    #[arg(long)]
    pub peer_urls: String,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotOp {
    /// Stream a consistent snapshot from a member into FILE (mode 0600).
    Save(SaveArgs),
}

#[derive(Debug, Args)]
pub struct ClientTls {
    /// Member client URL to talk to.
    #[arg(long, default_value = "https://127.0.0.1:2379")]
    pub endpoints: String,
    /// CA bundle that signed the member's server certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the snapshot.
    pub file: PathBuf,
    #[command(flatten)]
    pub tls: ClientTls,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot file written by `snapshot save` or `etcdctl snapshot save`.
    pub file: PathBuf,
    /// Data directory to create (must not exist yet).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Name of the member of the new cluster.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Peer URL(s) of the new member, comma separated.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Token of the new cluster (makes its cluster ID distinct).
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Directory for the Raft log, the keyspace and snapshots. Default: `<name>.etcd`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to serve clients on (comma separated, https unless --insecure).
    #[arg(long, default_value = "https://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs advertised to the cluster (MemberList). Default: the listen URLs.
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// URLs to serve peers on (Raft traffic).
    #[arg(long, default_value = "https://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs advertised to the cluster. Default: the listen peer URLs.
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster, `name=peerURL,...`. Default: this member alone.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one (after `member add`).
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Token that makes cluster and member IDs unique per cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Server certificate for clients (PEM).
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Server key for clients (PEM).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA that client certificates must be signed by.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a CA-signed client certificate (on by default: set to false explicitly to allow anonymous TLS clients).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Certificate for peer traffic, used as server and client (PEM).
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Key for peer traffic (PEM).
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// CA that peer certificates must be signed by.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require CA-signed peer certificates (always on; accepted for etcd compatibility).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Serve clients and peers in plaintext. For tests only: anyone who can reach the ports owns the data.
    #[arg(long)]
    pub insecure: bool,
    /// Plain-HTTP URLs for /metrics and /health (comma separated; empty disables).
    #[arg(long, default_value = "")]
    pub listen_metrics_urls: String,
    /// Raft heartbeat interval in milliseconds. openraft 0.9 also uses it as
    /// the deadline of every replication message, so at least a quarter of
    /// --election-timeout is used.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Applied entries between Raft snapshots (log compaction). etcd 3.4
    /// and 3.5's default; etcd 3.6 lowered it to 10000, which costs this
    /// store a write tail four to six times longer (datastore/README.md).
    #[arg(long, default_value_t = 100000)]
    pub snapshot_count: u64,
    /// Raft entries kept after a snapshot for slow followers to catch up
    /// from; a member further behind receives the snapshot instead.
    #[arg(long, default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Interval of watch progress notifications for watchers that asked for them, e.g. `10m`, `5s`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: std::time::Duration,
    /// Largest client request (a Put, Txn or DeleteRange as encoded) accepted,
    /// in bytes; larger ones get `etcdserver: request is too large`. etcd's default.
    #[arg(long, default_value_t = crate::limits::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Database size, in bytes, past which writes raise the NOSPACE alarm and are
    /// refused until space is freed and the alarm disarmed; 0 = etcd's default, 2 GiB.
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format: `json` (structured, default) or `text`.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s or 10m"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    })
}

pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// A listen URL resolved to a socket address and whether it is TLS.
pub fn listen_addr(url: &str, flag: &str) -> anyhow::Result<(SocketAddr, bool)> {
    let u =
        url::Url::parse(url).map_err(|e| anyhow::anyhow!("--{flag}: `{url}` is not a URL: {e}"))?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        other => anyhow::bail!(
            "--{flag}: `{url}` has scheme `{other}`; use https (or http with --insecure)"
        ),
    };
    let host = u
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("--{flag}: `{url}` has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = u
        .port()
        .ok_or_else(|| anyhow::anyhow!("--{flag}: `{url}` has no port"))?;
    let ip: std::net::IpAddr = if host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().map_err(|_| {
            anyhow::anyhow!("--{flag}: `{url}`: listen on an IP address, not a host name")
        })?
    };
    Ok((SocketAddr::new(ip, port), tls))
}

/// Parses `--initial-cluster` (`name=url,name=url2,...`) into (name, peer URLs).
pub fn parse_initial_cluster(s: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in split_urls(s) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--initial-cluster: `{part}` is not `name=peerURL`"))?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        anyhow::bail!("--initial-cluster is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique argument names, valid
    /// defaults), which otherwise only fire when that subcommand runs.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
