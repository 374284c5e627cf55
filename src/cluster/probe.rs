//! The cluster's part of the facts probe: a shell fragment run in the same
//! exec as every observation (see `k8sup_engine::Phases::facts_probe`).
//! It prints `key=value` lines:
//! - `cgroup=v1|v2`: the layout the kubelet and containerd must match;
//! - `k8sup.ipv4=ADDR`: the host's first global IPv4 address (for hosts
//!   the inventory names by DNS);
//! - `k8sup.podcidr=NET` and `k8sup.route.ADDR=NET`: the pod network this
//!   node's CNI config has, and those it routes to other nodes (so that a
//!   running node keeps its network: `topology.rs`);
//! - `k8sup.missing=TOOL…`: the host programs a node needs that it lacks
//!   (the preflight of `host_prep.rs`);
//! - `k8sup.datastore=present` when the datastore's data directory exists
//!   (this control plane is already a member of a cluster);
//! - `k8sup.apiserver=present` when kube-apiserver's unit is installed
//!   (this control plane already serves the API);
//! - `secret.pki.PATH=BASE64` for every credential file the host holds
//!   (`certificates.rs`): the cluster, not the workstation, keeps them;
//! - `k8sup.state=BASE64`: the cluster's record on a control plane
//!   (`state.rs`).

use k8sup_engine::EngineError;

use crate::node::{CNI_CONFIG, ROUTES_UNIT};
use crate::topology::{FACT_IPV4, FACT_POD_CIDR, FACT_ROUTE_PREFIX};

/// The host programs of `host_prep::probed_tools` this host lacks,
/// space-separated (empty when it has them all).
pub const FACT_MISSING: &str = "k8sup.missing";

/// Present when this host holds datastore data (see the module docs).
pub const FACT_DATASTORE: &str = "k8sup.datastore";
/// Present when this host's kube-apiserver unit is installed.
pub const FACT_APISERVER: &str = "k8sup.apiserver";

/// The probe for a cluster whose credentials live at `paths`.
pub fn facts_probe(paths: &[&str], datastore_dir: &str) -> Result<String, EngineError> {
    let mut quoted = Vec::new();
    for p in paths {
        quoted.push(shlex::try_quote(p).map_err(|e| EngineError::Invalid {
            host: "(cluster)".into(),
            reason: format!("credential path {p:?}: {e}"),
        })?);
    }
    let dir = shlex::try_quote(datastore_dir).map_err(|e| EngineError::Invalid {
        host: "(cluster)".into(),
        reason: format!("datastore directory {datastore_dir:?}: {e}"),
    })?;
    Ok(format!(
        "[ -d {dir} ] && [ -n \"$(ls -A {dir} 2>/dev/null)\" ] && echo {FACT_DATASTORE}=present\n\
         [ -f {apiserver_unit} ] && echo {FACT_APISERVER}=present\n\
         if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo cgroup=v2; else echo cgroup=v1; fi\n\
         printf '{FACT_IPV4}=%s\\n' \"$(ip -4 -o addr show scope global 2>/dev/null | awk '{{print $4; exit}}' | cut -d/ -f1)\"\n\
         sed -n 's/.*\"subnet\": *\"\\([^\"]*\\)\".*/{FACT_POD_CIDR}=\\1/p' {CNI_CONFIG} 2>/dev/null\n\
         sed -n 's|^ExecStart=/sbin/ip route replace \\([^ ]*\\) via \\([^ ]*\\)$|{FACT_ROUTE_PREFIX}\\2=\\1|p' /etc/systemd/system/{ROUTES_UNIT} 2>/dev/null\n\
         m=; for t in {tools}; do PATH=$PATH:/usr/sbin:/sbin command -v $t >/dev/null 2>&1 || m=\"$m $t\"; done; echo {FACT_MISSING}=${{m# }}\n\
         [ -f {state} ] && printf '{fact_state}=%s\\n' \"$(base64 -w0 < {state})\"\n\
         for p in {}; do\n  \
           [ -f \"$p\" ] && printf '{prefix}%s=%s\\n' \"$p\" \"$(base64 -w0 < \"$p\")\"\n\
         done\n",
        quoted.join(" "),
        prefix = crate::certificates::FACT_PREFIX,
        tools = crate::host_prep::probed_tools().join(" "),
        state = crate::state::STATE_PATH,
        apiserver_unit = format_args!(
            "{}/{}",
            k8sup_engine::UNIT_DIR,
            crate::control_plane::APISERVER_UNIT
        ),
        fact_state = crate::state::FACT_STATE,
    ))
}
