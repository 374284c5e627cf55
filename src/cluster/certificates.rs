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
//! applied. The same inputs give the very same files within a run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use k8sup_engine::{Content, DesiredState, EngineError, Facts, Resource};
use k8sup_pki::{Existing, Member, Pki, PkiSpec, Policy, time::OffsetDateTime};
use sha2::{Digest, Sha256};

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

/// Credentials issued in this run, by the fingerprint of their inputs.
type Memo = Vec<([u8; 32], Arc<Pki>)>;

/// Issues (or keeps) the cluster's credentials, the same ones for the same
/// inputs within a run.
#[derive(Default, Clone)]
pub struct Issuer {
    memo: Arc<Mutex<Memo>>,
    now: Option<OffsetDateTime>,
}

impl Issuer {
    pub fn new() -> Self {
        Issuer {
            memo: Arc::default(),
            now: Some(OffsetDateTime::now_utc()),
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
        let mut memo = self.memo.lock().expect("memo lock");
        if let Some((_, pki)) = memo.iter().find(|(k, _)| *k == key) {
            return Ok(pki.clone());
        }
        let now = self.now.unwrap_or_else(OffsetDateTime::now_utc);
        let pki = Arc::new(
            k8sup_pki::reconcile(spec, &existing, now, &Policy::default())
                .map_err(|e| invalid("(cluster)", e))?,
        );
        memo.push((key, pki.clone()));
        Ok(pki)
    }
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
        }
        s.push(r);
    }
    s
}

fn invalid(host: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid {
        host: host.to_string(),
        reason: format!("certificates: {e}"),
    }
}
