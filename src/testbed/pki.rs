//! The cluster's certificates from `k8sup-pki` (the product's own PKI),
//! written under a directory, one tree per host: `DIR/cp-1/etc/kubernetes/...`.
//! All control planes are on 127.0.0.1, so the per-member datastore
//! certificates all name loopback.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8sup_pki::{Existing, Member, PkiSpec, Policy, layout, reconcile};

pub struct TestPki {
    pub dir: PathBuf,
    /// Control planes `cp-1` .. `cp-N`, each with a datastore member.
    pub members: usize,
    pub apiserver_url: String,
}

impl TestPki {
    /// Issues everything for `members` control planes whose kubeconfigs
    /// point at `apiserver_url`, and writes it under `dir`.
    pub fn issue(dir: &Path, members: usize, apiserver_url: &str) -> TestPki {
        let loopback: IpAddr = [127, 0, 0, 1].into();
        let spec = PkiSpec {
            cluster_name: "testbed".into(),
            cluster_domain: "cluster.local".into(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            control_planes: (1..=members)
                .map(|i| Member::new(&format!("cp-{i}"), &[loopback]))
                .collect(),
            nodes: Vec::new(),
            api_server_extra_sans: Vec::new(),
            api_server_url: apiserver_url.into(),
            own_datastore: true,
        };
        let now = k8sup_pki::time::OffsetDateTime::now_utc();
        let pki = reconcile(&spec, &Existing::new(), now, &Policy::default())
            .expect("k8sup-pki issues a fresh cluster's credentials");
        let t = TestPki {
            dir: dir.to_path_buf(),
            members,
            apiserver_url: apiserver_url.into(),
        };
        for i in 0..members {
            let host = Self::host(i);
            for f in pki.files_for(&host) {
                let p = t.path(i, f.path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, &f.contents).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).unwrap();
            }
        }
        t
    }

    /// The inventory name of control plane `i` (0-based): `cp-{i+1}`.
    pub fn host(i: usize) -> String {
        format!("cp-{}", i + 1)
    }

    /// Where control plane `i`'s copy of the on-host file `path` is.
    pub fn path(&self, i: usize, path: &str) -> PathBuf {
        self.dir
            .join(Self::host(i))
            .join(path.trim_start_matches('/'))
    }

    /// The datastore client's files (CA, certificate, key), as kube-apiserver
    /// uses them: the same for etcd and k8sup-datastore.
    pub fn datastore_client(&self) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.path(0, layout::DATASTORE_CA_CRT),
            self.path(0, layout::APISERVER_DATASTORE_CLIENT_CRT),
            self.path(0, layout::APISERVER_DATASTORE_CLIENT_KEY),
        )
    }

    pub fn admin_conf(&self) -> PathBuf {
        self.path(0, layout::ADMIN_CONF)
    }
}
