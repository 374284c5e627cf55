//! `cluster.datastore.type: external`: the user's etcd, for teams that must
//! keep it. k8sup runs no datastore member then; it only gives every control
//! plane the user's client credentials and points kube-apiserver at the
//! user's endpoints.
//!
//! Why these files are pushed as they are: they are the user's (their CA,
//! their client certificate), like the workload's files, not rendered by
//! k8sup. The key is written 0600, owned by root.

use k8sup_engine::{Content, DesiredState, Resource};
use k8sup_inventory::ExternalDatastore;

/// Where a control plane keeps the external datastore's credentials.
pub const CA: &str = "/etc/kubernetes/pki/external-datastore/ca.crt";
pub const CLIENT_CRT: &str = "/etc/kubernetes/pki/external-datastore/client.crt";
pub const CLIENT_KEY: &str = "/etc/kubernetes/pki/external-datastore/client.key";

/// The credentials files of control plane `host`.
pub fn host_state(host: &str, ext: &ExternalDatastore) -> DesiredState {
    let mut s = DesiredState::new(host);
    s.push(Resource::file(CA, Content::local(&ext.ca_file)).mode(0o644));
    s.push(Resource::file(CLIENT_CRT, Content::local(&ext.cert_file)).mode(0o644));
    s.push(Resource::file(CLIENT_KEY, Content::local(&ext.key_file)).mode(0o600));
    s
}
