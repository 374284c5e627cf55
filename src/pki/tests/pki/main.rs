//! What a user of the cluster would notice about its PKI, checked with the
//! real `openssl` where that is the strongest check: certificates verify
//! against the CA they must, carry the names clients dial and the identity
//! Kubernetes authorizes, keys stay private, and re-applying issues nothing
//! but what changed.

mod certificates;
mod kubeconfigs;
mod openssl;
mod reconciling;
mod rustls_accepts;

use std::net::IpAddr;

use k8sup_pki::time::{Duration, OffsetDateTime};
use k8sup_pki::{Existing, File, Member, Pki, PkiSpec, Policy, reconcile};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Three control planes (which also run kubelets) and two workers.
pub fn spec() -> PkiSpec {
    let cps: Vec<Member> = (1..=3)
        .map(|i| Member::new(&format!("cp-{i}"), &[ip(&format!("10.0.0.1{i}"))]))
        .collect();
    let workers = (1..=2).map(|i| Member::new(&format!("w-{i}"), &[ip(&format!("10.0.0.2{i}"))]));
    PkiSpec {
        cluster_name: "demo".into(),
        cluster_domain: "cluster.local".into(),
        service_cidr: "10.152.183.0/24".parse().unwrap(),
        nodes: cps.iter().cloned().chain(workers).collect(),
        control_planes: cps,
        api_server_extra_sans: vec!["api.example.com".into(), "192.0.2.10".into()],
        api_server_url: "https://127.0.0.1:6443".into(),
        own_datastore: true,
    }
}

/// The clock, to the second (as certificates record it), so that expiry
/// arithmetic is exact. Real time, because `openssl verify` checks validity
/// against its own clock.
pub fn now() -> OffsetDateTime {
    use std::sync::OnceLock;
    static NOW: OnceLock<i64> = OnceLock::new();
    let t = *NOW.get_or_init(|| OffsetDateTime::now_utc().unix_timestamp());
    OffsetDateTime::from_unix_timestamp(t).unwrap()
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A first apply: nothing on the hosts.
pub fn fresh(spec: &PkiSpec) -> Pki {
    reconcile(spec, &Existing::new(), now(), &Policy::default()).unwrap()
}

/// The file at `path` that `host` must have.
pub fn file<'a>(pki: &'a Pki, host: &str, path: &str) -> &'a File {
    pki.files_for(host)
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{host} has no {path}"))
}

pub fn text<'a>(pki: &'a Pki, host: &str, path: &str) -> &'a str {
    std::str::from_utf8(&file(pki, host, path).contents).unwrap()
}

/// `(label, reason)` of every change, sorted, for whole-set assertions.
pub fn changes(pki: &Pki) -> Vec<String> {
    let mut v: Vec<String> = pki.changes().map(|i| i.label()).collect();
    v.sort();
    v
}
