//! The cluster's credentials as a phase: every certificate, key and
//! kubeconfig a host must hold (`k8sup-pki` decides which, and issues what
//! is missing), written 0600/0644 as root.
//!
//! Where the existing ones come from: the cluster is the source of truth,
//! so k8sup keeps none on the workstation. The facts probe (`probe.rs`)
//! prints every credential file a host holds, base64-encoded under a
//! `secret.` key (the engine never serializes or prints those), in the same
//! exec as the observation; this phase hands them to `k8sup_pki::reconcile`
//! as [`Existing`]. Nothing is regenerated on re-apply, and a new node gets
//! only its own.
//!
//! Why issuing is memoized: the engine computes a phase's desired state more
//! than once in a run (to plan it, then to apply exactly that plan), and a
//! fresh key each time would make the approved plan differ from what is
//! applied. The same inputs give the very same files within a run, and
//! hosts that already hold what this run issued get those very files back
//! (so `k8sup certs renew`, which renews every leaf, renews each once per
//! run, not again in each phase planned after the certificates were written).
//!
//! How a component picks up a renewed credential: each one that reads
//! credentials ([`CONSUMERS`]) gets, in its own phase and step, a small file
//! of the SHA-256 of each credential it reads
//! (`/etc/k8sup/credentials/UNIT.sha256`, `templates/credentials.sha256`),
//! which notifies its service. A renewed certificate changes that file, so
//! the engine restarts the service once, at the end of its step, after its
//! health gate's step order (the datastore restarts one member at a time).
//! Computed from the credentials this run wants (not from what the hosts
//! hold), so the plan shows each restart before anything is written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use k8sup_engine::{Content, DesiredState, EngineError, Facts, Resource, ResourceId};
use k8sup_pki::{
    Existing, Kind, Member, Pki, PkiSpec, Policy, Reason, layout, time::OffsetDateTime,
};
use sha2::{Digest, Sha256};

use crate::digest::sha256_hex;
use crate::topology::Topology;

/// The facts key prefix under which the probe prints a credential file.
pub const FACT_PREFIX: &str = "secret.pki.";

/// What the cluster's PKI depends on.
pub fn spec(t: &Topology) -> PkiSpec {
    let member = |n: &crate::topology::Node| Member::new(&n.name, &[n.ip]);
    PkiSpec {
        cluster_name: t.cluster.name.clone(),
        cluster_domain: t.cluster.cluster_domain.clone(),
        service_cidr: t.cluster.service_cidr,
        control_planes: t.control_planes().map(member).collect(),
        nodes: t.nodes.iter().map(member).collect(),
        // The endpoint users reach (a load balancer's name) is one more name.
        api_server_extra_sans: t
            .cluster
            .api_server
            .extra_sans
            .iter()
            .cloned()
            .chain(
                t.cluster
                    .api_server
                    .endpoint
                    .as_ref()
                    .map(|e| e.host.clone())
                    .filter(|h| !t.cluster.api_server.extra_sans.contains(h)),
            )
            .collect(),
        api_server_url: format!("https://127.0.0.1:{}", t.cluster.api_server.port),
        own_datastore: t.cluster.datastore.external.is_none(),
    }
}

/// Every credential path on any host (what the probe reads).
pub fn paths(spec: &PkiSpec) -> Result<Vec<&'static str>, EngineError> {
    let mut out: Vec<&'static str> = k8sup_pki::to_read(spec)
        .map_err(|e| invalid("(cluster)", e))?
        .into_iter()
        .map(|r| r.path)
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What the hosts hold, from their facts.
pub fn existing(facts: &BTreeMap<String, Facts>) -> Result<Existing, EngineError> {
    let mut e = Existing::new();
    for (host, f) in facts {
        for (k, v) in &f.0 {
            let Some(path) = k.strip_prefix(FACT_PREFIX) else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .map_err(|err| {
                    invalid(
                        host,
                        format!("{path}: its content did not come back intact ({err})"),
                    )
                })?;
            e.insert(host, path, bytes);
        }
    }
    Ok(e)
}

/// Credentials issued in this run, by the fingerprint of their inputs
/// (spec and facts), with the fingerprint of the spec alone.
type Memo = Vec<([u8; 32], [u8; 32], Arc<Pki>)>;

/// Issues (or keeps) the cluster's credentials, the same ones for the same
/// inputs within a run.
#[derive(Default, Clone)]
pub struct Issuer {
    memo: Arc<Mutex<Memo>>,
    now: Option<OffsetDateTime>,
    policy: Policy,
}

impl Issuer {
    pub fn new() -> Self {
        Self::with_policy(Policy::default())
    }

    /// An issuer that also renews what `policy` asks for
    /// (`Policy::renew_all()`: `k8sup certs renew`).
    pub fn with_policy(policy: Policy) -> Self {
        Issuer {
            memo: Arc::default(),
            now: Some(OffsetDateTime::now_utc()),
            policy,
        }
    }

    /// The cluster's credentials, given what the hosts hold.
    pub fn issue(
        &self,
        spec: &PkiSpec,
        facts: &BTreeMap<String, Facts>,
    ) -> Result<Arc<Pki>, EngineError> {
        let existing = existing(facts)?;
        let key = fingerprint(spec, facts);
        let spec_key = fingerprint(spec, &BTreeMap::new());
        let mut memo = self.memo.lock().expect("memo lock");
        if let Some((_, _, pki)) = memo.iter().find(|(k, _, _)| *k == key) {
            return Ok(pki.clone());
        }
        // The hosts hold what this run issued for this spec (the
        // certificates phase wrote it): that is the answer, not a second
        // renewal.
        if let Some(pki) = memo
            .iter()
            .filter(|(_, s, _)| *s == spec_key)
            .map(|(_, _, p)| p)
            .find(|p| held(p, &existing, facts.keys()))
        {
            let pki = pki.clone();
            memo.push((key, spec_key, pki.clone()));
            return Ok(pki);
        }
        let now = self.now.unwrap_or_else(OffsetDateTime::now_utc);
        let pki = Arc::new(
            k8sup_pki::reconcile(spec, &existing, now, &self.policy)
                .map_err(|e| invalid("(cluster)", e))?,
        );
        refuse_second_ca(&pki, facts)?;
        memo.push((key, spec_key, pki.clone()));
        Ok(pki)
    }
}

/// A CA is issued only for a cluster that has none: when a CA would be
/// "missing" while an observed host holds its certificate, the run did not
/// observe the control planes that keep it (a run on chosen hosts only),
/// and a second CA would cut the chosen hosts off from the cluster.
fn refuse_second_ca(pki: &Pki, facts: &BTreeMap<String, Facts>) -> Result<(), EngineError> {
    let missing = pki
        .items
        .iter()
        .filter(|i| i.kind == Kind::Ca && i.change == Some(Reason::Missing))
        .flat_map(|i| &i.files)
        .filter(|f| f.mode & 0o044 != 0);
    for f in missing {
        let key = format!("{FACT_PREFIX}{}", f.path);
        if let Some((host, _)) = facts.iter().find(|(_, hf)| hf.get(&key).is_some()) {
            return Err(invalid(
                host,
                format!(
                    "{host} holds the cluster's CA ({}), but no control plane among the hosts of \
                     this run does: the CAs and their keys are read from the control planes, \
                     and without them k8sup would issue a second CA that cuts {host} off; \
                     include a control plane among the chosen hosts",
                    f.path
                ),
            ));
        }
    }
    Ok(())
}

/// Whether every one of `hosts` holds exactly its files of `pki`.
fn held<'a>(pki: &Pki, existing: &Existing, hosts: impl Iterator<Item = &'a String>) -> bool {
    let mut any = false;
    for h in hosts {
        for f in pki.files_for(h) {
            any = true;
            if existing.get(h, f.path) != Some(f.contents.as_slice()) {
                return false;
            }
        }
    }
    any
}

fn fingerprint(spec: &PkiSpec, facts: &BTreeMap<String, Facts>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("{spec:?}"));
    for (host, f) in facts {
        for (k, v) in f.0.iter().filter(|(k, _)| k.starts_with(FACT_PREFIX)) {
            h.update(host.as_bytes());
            h.update([0]);
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([1]);
        }
    }
    h.finalize().into()
}

/// `host`'s credential files as engine resources (keys and kubeconfigs are
/// sensitive: never diffed, never sent back).
pub fn host_state(pki: &Pki, host: &str) -> DesiredState {
    let mut s = DesiredState::new(host);
    for f in pki.files_for(host) {
        let mut r = Resource::file(f.path, Content::Inline(f.contents.clone()))
            .mode(f.mode)
            .owner(f.owner)
            .group("root");
        if f.mode & 0o044 == 0 {
            r = r.sensitive();
        } else if f.path.ends_with(".crt") {
            // A renewal's plan says what changed (validity, serial), not
            // two blocks of base64.
            r = r.diff_view(k8sup_pki::describe_pem);
        }
        s.push(r);
    }
    s
}

/// The services that read credentials, and which (a path a host does not
/// hold is left out of its digest). The API-server proxy reads only the CA,
/// which a renewal keeps; containerd reads none.
pub const CONSUMERS: &[(&str, &[&str])] = &[
    (
        crate::control_plane::DATASTORE_UNIT,
        &[
            layout::DATASTORE_CA_CRT,
            layout::DATASTORE_SERVER_CRT,
            layout::DATASTORE_SERVER_KEY,
            layout::DATASTORE_PEER_CRT,
            layout::DATASTORE_PEER_KEY,
        ],
    ),
    (
        crate::control_plane::APISERVER_UNIT,
        &[
            layout::CA_CRT,
            layout::APISERVER_CRT,
            layout::APISERVER_KEY,
            layout::DATASTORE_CA_CRT,
            layout::APISERVER_DATASTORE_CLIENT_CRT,
            layout::APISERVER_DATASTORE_CLIENT_KEY,
            layout::APISERVER_KUBELET_CLIENT_CRT,
            layout::APISERVER_KUBELET_CLIENT_KEY,
            layout::FRONT_PROXY_CA_CRT,
            layout::FRONT_PROXY_CLIENT_CRT,
            layout::FRONT_PROXY_CLIENT_KEY,
            layout::SA_KEY,
            layout::SA_PUB,
        ],
    ),
    (
        crate::control_plane::CONTROLLER_MANAGER_UNIT,
        &[
            layout::CONTROLLER_MANAGER_CONF,
            layout::CA_CRT,
            layout::CA_KEY,
            layout::FRONT_PROXY_CA_CRT,
            layout::SA_KEY,
        ],
    ),
    (
        crate::control_plane::SCHEDULER_UNIT,
        &[layout::SCHEDULER_CONF],
    ),
    (
        crate::node::KUBELET_UNIT,
        &[
            layout::KUBELET_CONF,
            layout::CA_CRT,
            layout::KUBELET_SERVING_CRT,
            layout::KUBELET_SERVING_KEY,
        ],
    ),
    (crate::node::KUBE_PROXY_UNIT, &[layout::KUBE_PROXY_CONF]),
    (crate::apiserver_proxy::UNIT_NAME, &[layout::CA_CRT]),
];

/// Where the digest of `unit`'s credentials lives on a host.
pub fn digest_path(unit: &str) -> String {
    format!("{DIGEST_DIR}/{unit}.sha256")
}

/// The directory of the credential digests.
pub const DIGEST_DIR: &str = "/etc/k8sup/credentials";

#[derive(serde::Serialize)]
struct FileSum {
    sha256: String,
    path: &'static str,
}

/// The digest file of the credentials `unit` reads on `host`, which
/// notifies `unit`'s service: a renewed credential restarts it. `None` for
/// a unit that reads no credential.
pub fn digest(pki: &Pki, host: &str, unit: &str) -> Result<Option<Resource>, EngineError> {
    let Some((_, paths)) = CONSUMERS.iter().find(|(u, _)| *u == unit) else {
        return Ok(None);
    };
    let files: Vec<FileSum> = paths
        .iter()
        .filter_map(|p| {
            pki.files_for(host).find(|f| f.path == *p).map(|f| FileSum {
                sha256: sha256_hex(&f.contents),
                path: f.path,
            })
        })
        .collect();
    let content = crate::render::template(
        host,
        "credentials.sha256",
        serde_json::json!({"unit": unit, "files": files}),
    )?;
    Ok(Some(
        Resource::file(digest_path(unit), content)
            .mode(0o600)
            .owner("root")
            .group("root")
            .notify(ResourceId::service(unit)),
    ))
}

fn invalid(host: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid {
        host: host.to_string(),
        reason: format!("certificates: {e}"),
    }
}
