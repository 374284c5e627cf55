//! The k8sup inventory: one YAML file that describes a cluster (its hosts,
//! their roles, how to reach them over SSH, cluster-wide settings).
//!
//! ```yaml
//! apiVersion: k8sup.io/v1alpha1
//! kind: Cluster
//! cluster: { name: demo, kubernetesVersion: v1.31.4 }
//! ssh: { user: root }
//! hosts:
//!   - { name: cp-1, address: 10.0.0.11, role: control-plane }
//! ```
//!
//! [`load`] reads and validates a file. Validation reports *every* problem at
//! once, each with file, line and column of the file as written, what was
//! expected and, where possible, the fix (did-you-mean for misspelt keys and
//! words). `${VAR}` / `${VAR:-default}` in string values are substituted from
//! the environment; substituted values are never echoed in messages.
//!
//! YAML anchors, aliases and `<<` merge keys work; top-level keys starting
//! with `x-` are ignored so that shared settings can live under an anchor.
//! [`Inventory`] serializes (serde) to the same schema, so other tools can
//! write inventories that read back identically (tested).
//!
//! How it works: the YAML is read into a position-annotated tree
//! (`yaml`: `Spanned` values), environment variables are substituted on that tree
//! (`env`), each section is decoded into typed structs while collecting
//! diagnostics (`decode`, `cluster`, `ssh`, `host`, `document`),
//! then whole-inventory checks run (`checks`).

mod checks;
mod cluster;
mod commands;
mod decode;
mod diagnostic;
mod document;
mod effective;
mod env;
mod example;
mod extra_args;
mod files;
mod host;
mod services;
mod source;
mod ssh;
mod targets;
mod values;
mod yaml;

use std::path::{Path, PathBuf};

pub use cluster::{
    ApiServer, Artifacts, Cluster, Components, ContainerRuntime, DEFAULT_API_SERVER_PORT,
    DEFAULT_CLUSTER_DOMAIN, DEFAULT_CONCURRENCY, DEFAULT_DATASTORE_CLIENT_PORT,
    DEFAULT_DATASTORE_DIR, DEFAULT_DATASTORE_PEER_PORT, DEFAULT_KUBERNETES_VERSION,
    DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR, Datastore, Endpoint, ExternalDatastore, ImageSource,
    KubeProxyMode, Options, Taint,
};
pub use commands::CommandSpec;
pub use diagnostic::{Diagnostic, Report, Severity};
pub use document::{CURRENT_API_VERSION, Inventory, KIND, SUPPORTED_API_VERSIONS};
pub use effective::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_SSH_PORT, DEFAULT_SSH_USER, EffectiveSsh,
    JumpHost, resolve_path,
};
pub use example::EXAMPLE_INVENTORY;
pub use extra_args::{ArgsComponent, ExtraArgs};
pub use files::{FileKind, FileSpec};
pub use host::{Host, Role};
pub use services::{ServiceSpec, ServiceState};
pub use source::Source;
pub use ssh::{HostKeyPolicy, SshSettings, SudoMode};
pub use targets::Targets;
pub use values::{JumpSpec, is_dns_label, is_dns_name};

/// A valid inventory and the warnings found while checking it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub inventory: Inventory,
    pub warnings: Vec<Diagnostic>,
}

/// Read and validate the inventory at `path`, substituting `${VAR}` from the
/// process environment.
///
/// On failure the [`Report`] holds every error and warning found.
pub fn load(path: &Path) -> Result<Loaded, Report> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse_str(&src, path, &|name| std::env::var(name).ok()),
        Err(e) => {
            let message = format!("cannot read the inventory: {e}");
            let mut d = Diagnostic::whole_file(Severity::Error, &shown, message);
            if e.kind() == std::io::ErrorKind::NotFound {
                d.help = Some("start from the example that `k8sup init` prints".to_owned());
            }
            Err(Report {
                file: shown,
                diagnostics: vec![d],
            })
        }
    }
}

/// Validate inventory text. `path` is used in messages (as given) and to
/// resolve relative paths (made absolute); `env` looks up `${VAR}`s.
pub fn parse_str(
    src: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Report> {
    let shown = path.display().to_string();
    let mut sink = diagnostic::Sink::new(&shown, src);
    let root = yaml::parse(&mut sink);
    let mut inventory = None;
    match root {
        None if !sink.has_errors() => {
            sink.error(yaml::Pos::default(), "the inventory file is empty")
                .help("start from the example that `k8sup init` prints");
        }
        None => {}
        Some(mut root) => {
            env::substitute_tree(&mut root, env, &mut sink);
            let mut cx = decode::Cx::new(sink);
            let absolute = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
            if let Some(draft) = document::decode(&mut cx, &root, absolute) {
                checks::run(&mut cx, &draft);
                inventory = draft.finish();
            }
            cx.report_unknown_keys();
            sink = cx.sink;
        }
    }
    let failed = sink.has_errors();
    let diagnostics = sink.finish();
    match inventory {
        Some(inventory) if !failed => Ok(Loaded {
            inventory,
            warnings: diagnostics,
        }),
        _ => Err(Report {
            file: shown,
            diagnostics,
        }),
    }
}
