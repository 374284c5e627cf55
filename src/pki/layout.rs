//! Where every file lives on a host, and with which mode.
//!
//! kubeadm's layout, so that an operator who knows kubeadm finds each file
//! where they expect it, and so that kubeadm's documentation (and
//! `kubeadm certs check-expiration`-style tooling) applies. Two departures:
//! the datastore's files are under `pki/datastore/` (kubeadm's `pki/etcd/`),
//! since the store is k8sup's own; and the kubelet's client certificate is
//! embedded in `kubelet.conf` instead of a rotated `kubelet-client-current.pem`,
//! since k8sup, not the kubelet, renews it.
//!
//! The same path holds a different file on each host for per-host
//! credentials (a datastore member's certificates, a kubelet's): the path
//! says what the file is, the host whose it is.

/// Where the cluster's certificates and keys live (kubeadm's directory).
pub const PKI_DIR: &str = "/etc/kubernetes/pki";

/// The Kubernetes CA: signs the apiserver's certificate and every client
/// certificate the apiserver accepts.
pub const CA_CRT: &str = "/etc/kubernetes/pki/ca.crt";
pub const CA_KEY: &str = "/etc/kubernetes/pki/ca.key";
pub const APISERVER_CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
pub const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// The apiserver's identity towards kubelets (`kubectl logs`, `exec`).
pub const APISERVER_KUBELET_CLIENT_CRT: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.crt";
pub const APISERVER_KUBELET_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.key";
/// The apiserver's identity towards the datastore (kubeadm's
/// `apiserver-etcd-client`).
pub const APISERVER_DATASTORE_CLIENT_CRT: &str =
    "/etc/kubernetes/pki/apiserver-datastore-client.crt";
pub const APISERVER_DATASTORE_CLIENT_KEY: &str =
    "/etc/kubernetes/pki/apiserver-datastore-client.key";
/// The front-proxy CA: aggregated API servers trust requests forwarded by
/// the apiserver only when signed by it, a CA apart from the cluster's.
pub const FRONT_PROXY_CA_CRT: &str = "/etc/kubernetes/pki/front-proxy-ca.crt";
pub const FRONT_PROXY_CA_KEY: &str = "/etc/kubernetes/pki/front-proxy-ca.key";
pub const FRONT_PROXY_CLIENT_CRT: &str = "/etc/kubernetes/pki/front-proxy-client.crt";
pub const FRONT_PROXY_CLIENT_KEY: &str = "/etc/kubernetes/pki/front-proxy-client.key";
/// The service-account signing key and its public half (the apiserver's
/// `--service-account-signing-key-file` and `--service-account-key-file`).
pub const SA_KEY: &str = "/etc/kubernetes/pki/sa.key";
pub const SA_PUB: &str = "/etc/kubernetes/pki/sa.pub";

/// The datastore's CA: members and their clients trust only it.
pub const DATASTORE_CA_CRT: &str = "/etc/kubernetes/pki/datastore/ca.crt";
pub const DATASTORE_CA_KEY: &str = "/etc/kubernetes/pki/datastore/ca.key";
/// A member's serving certificate (for clients), one per control plane.
pub const DATASTORE_SERVER_CRT: &str = "/etc/kubernetes/pki/datastore/server.crt";
pub const DATASTORE_SERVER_KEY: &str = "/etc/kubernetes/pki/datastore/server.key";
/// A member's certificate towards the other members, one per control plane.
pub const DATASTORE_PEER_CRT: &str = "/etc/kubernetes/pki/datastore/peer.crt";
pub const DATASTORE_PEER_KEY: &str = "/etc/kubernetes/pki/datastore/peer.key";

/// Kubeconfigs (each embeds its client key: mode 0600).
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const CONTROLLER_MANAGER_CONF: &str = "/etc/kubernetes/controller-manager.conf";
pub const SCHEDULER_CONF: &str = "/etc/kubernetes/scheduler.conf";
pub const KUBE_PROXY_CONF: &str = "/etc/kubernetes/kube-proxy.conf";
/// The kubelet's kubeconfig, with its `system:node:NAME` client certificate.
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
/// The kubelet's serving certificate (`--tls-cert-file`), issued by the CA
/// because the apiserver never auto-approves kubelet serving CSRs.
pub const KUBELET_SERVING_CRT: &str = "/var/lib/kubelet/pki/kubelet.crt";
pub const KUBELET_SERVING_KEY: &str = "/var/lib/kubelet/pki/kubelet.key";

/// Every file is owned by root, as kubeadm leaves them.
pub const OWNER: &str = "root";
/// Private keys, and kubeconfigs (which embed one): root only.
pub const MODE_SECRET: u32 = 0o600;
/// Certificates and public keys: anyone may read them.
pub const MODE_PUBLIC: u32 = 0o644;
