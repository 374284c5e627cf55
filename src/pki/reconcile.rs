//! Generated once, never regenerated: from what the hosts hold and what the
//! cluster needs, decide for each credential whether it stays as it is or
//! is issued, and say why.
//!
//! The caller reads the files [`to_read`](crate::to_read) lists, hands them
//! over as [`Existing`], and gets a [`Pki`]: every credential with its files
//! (the bytes found, or new ones) and, for each one issued, a [`Reason`] a
//! plan can print. A CA that exists is never replaced; a new node gets only
//! its own certificates; a new control plane re-issues the apiserver's
//! certificate (its SANs changed) and signs its own datastore member
//! certificates, and nothing else.
//!
//! Pure: the clock is a parameter, and the only randomness is in new keys.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rcgen::KeyPair;
use time::OffsetDateTime;

use crate::ca::Ca;
use crate::cluster::{Authority, PkiSpec, Wanted, What, wanted};
use crate::error::PkiError;
use crate::inspect::{self, CertInfo};
use crate::kubeconfig::Kubeconfig;
use crate::layout::{MODE_PUBLIC, MODE_SECRET, OWNER, SA_KEY, SA_PUB};
use crate::leaf::LeafSpec;
use crate::renew::Policy;

/// What the caller read from the hosts: file contents by (host, path). A
/// file that is not on a host is simply not inserted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Existing {
    files: BTreeMap<(String, String), Vec<u8>>,
}

impl fmt::Debug for Existing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents include private keys: list only where files are.
        f.debug_set().entries(self.files.keys()).finish()
    }
}

impl Existing {
    pub fn new() -> Existing {
        Existing::default()
    }

    pub fn insert(&mut self, host: &str, path: &str, contents: impl Into<Vec<u8>>) {
        self.files
            .insert((host.to_string(), path.to_string()), contents.into());
    }

    pub fn remove(&mut self, host: &str, path: &str) -> Option<Vec<u8>> {
        self.files.remove(&(host.to_string(), path.to_string()))
    }

    pub fn get(&self, host: &str, path: &str) -> Option<&[u8]> {
        self.files
            .get(&(host.to_string(), path.to_string()))
            .map(Vec::as_slice)
    }

    /// What the hosts hold once `pki` is applied: every file on each of its hosts.
    pub fn from_pki(pki: &Pki) -> Existing {
        let mut e = Existing::new();
        for file in pki.items.iter().flat_map(|i| &i.files) {
            for host in &file.hosts {
                e.insert(host, file.path, file.contents.clone());
            }
        }
        e
    }

    /// The first of `hosts` (in order) that has `path`, and its copy.
    fn first<'a>(&'a self, hosts: &'a [String], path: &str) -> Option<(&'a str, &'a [u8])> {
        hosts
            .iter()
            .find_map(|h| self.get(h, path).map(|b| (h.as_str(), b)))
    }
}

/// A file to put on hosts. Always owned by root ([`OWNER`]).
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// The absolute path on each host (see [`layout`](crate::layout)).
    pub path: &'static str,
    /// The hosts that must have this file, with these contents.
    pub hosts: Vec<String>,
    pub contents: Vec<u8>,
    /// 0600 for private keys and kubeconfigs, 0644 for certificates.
    pub mode: u32,
    pub owner: &'static str,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("File");
        d.field("path", &self.path)
            .field("hosts", &self.hosts)
            .field("mode", &format_args!("{:o}", self.mode));
        if self.mode == MODE_SECRET {
            d.field(
                "contents",
                &format_args!("<{} secret bytes>", self.contents.len()),
            );
        } else {
            d.field("contents", &String::from_utf8_lossy(&self.contents));
        }
        d.finish()
    }
}

impl File {
    fn new(path: &'static str, hosts: &[String], contents: impl Into<Vec<u8>>, mode: u32) -> File {
        File {
            path,
            hosts: hosts.to_vec(),
            contents: contents.into(),
            mode,
            owner: OWNER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CA's certificate and key.
    Ca,
    /// A certificate and its key.
    Leaf,
    /// One file embedding a client certificate, its key and the CA.
    Kubeconfig,
    /// The service-account key pair (no certificate).
    KeyPair,
}

/// Why a credential is issued (or, for a kubeconfig, rewritten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No host has it: a new cluster, a new node or control plane, or a file deleted.
    Missing,
    /// It is there but is not a certificate or key k8sup can read.
    Unreadable(String),
    /// Its signature does not verify with the CA's key (the CA was
    /// replaced by hand, or files were mixed up).
    NotSignedByCa,
    /// The key beside it is not its key.
    KeyMismatch,
    /// Its CN or O differs from what the cluster needs.
    SubjectChanged { was: String, now: String },
    /// Its names differ from what the cluster needs (a control plane was
    /// added or removed, extra SANs or the service CIDR changed).
    SansChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Its client/server usage differs from what it is for.
    UsageChanged,
    /// It expires within the policy's window (or has expired).
    ExpiresSoon {
        not_after: OffsetDateTime,
        days_left: i64,
    },
    /// `k8sup certs renew`.
    RenewRequested,
    /// A kubeconfig whose certificate is fine but whose server, cluster
    /// name or CA is not: rewritten with the same certificate and key.
    Rewritten,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "missing"),
            Reason::Unreadable(why) => write!(f, "unreadable ({why})"),
            Reason::NotSignedByCa => write!(f, "not signed by the cluster's CA"),
            Reason::KeyMismatch => write!(f, "its key does not match the certificate"),
            Reason::SubjectChanged { was, now } => write!(f, "subject {was} must be {now}"),
            Reason::SansChanged { added, removed } => {
                write!(f, "names changed:")?;
                for a in added {
                    write!(f, " +{a}")?;
                }
                for r in removed {
                    write!(f, " -{r}")?;
                }
                Ok(())
            }
            Reason::UsageChanged => write!(f, "client/server usage changed"),
            Reason::ExpiresSoon {
                not_after,
                days_left,
            } => {
                let d = not_after.date();
                let verb = if *days_left < 0 { "expired" } else { "expires" };
                write!(
                    f,
                    "{verb} {:04}-{:02}-{:02} ({days_left} days)",
                    d.year(),
                    u8::from(d.month()),
                    d.day()
                )
            }
            Reason::RenewRequested => write!(f, "renewal requested"),
            Reason::Rewritten => write!(f, "server, cluster name or CA changed"),
        }
    }
}

/// One credential of the cluster and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// e.g. `ca`, `apiserver`, `admin.conf`, `kubelet-serving` (see the crate docs).
    pub name: String,
    /// For a per-host credential (a datastore member's, a kubelet's): its host.
    pub node: Option<String>,
    pub kind: Kind,
    /// Its files with their contents: the ones found when it is kept, new
    /// ones when it is issued. A CA key the caller did not read is left
    /// out: the hosts keep theirs.
    pub files: Vec<File>,
    /// `None`: kept exactly as found. `Some`: issued (or rewritten), and why.
    pub change: Option<Reason>,
    /// When its certificate expires (none for the service-account key pair).
    pub not_after: Option<OffsetDateTime>,
}

impl Item {
    /// `apiserver`, or `kubelet-serving (w-1)` for a per-host credential.
    pub fn label(&self) -> String {
        match &self.node {
            Some(n) => format!("{} ({n})", self.name),
            None => self.name.clone(),
        }
    }
}

/// The cluster's credentials after [`reconcile`], in catalogue order (CAs first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub items: Vec<Item>,
}

impl Pki {
    /// Only what is issued or rewritten: what a plan shows.
    pub fn changes(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.change.is_some())
    }

    /// Every file `host` must have.
    pub fn files_for(&self, host: &str) -> impl Iterator<Item = &File> + '_ {
        let host = host.to_string();
        self.items
            .iter()
            .flat_map(|i| &i.files)
            .filter(move |f| f.hosts.contains(&host))
    }

    /// The credential `name` (of `node`, for a per-host one).
    pub fn item(&self, name: &str, node: Option<&str>) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.name == name && i.node.as_deref() == node)
    }
}

/// Decides, for every credential the cluster needs, whether what the hosts
/// hold is still right, and issues what is not.
///
/// Errors, rather than replacing anything, when a CA is unusable or
/// differs between control planes, and with [`PkiError::CaKeyNeeded`] when
/// something must be signed by a CA whose key was not given: read the key
/// from a control plane and call again.
pub fn reconcile(
    spec: &PkiSpec,
    existing: &Existing,
    now: OffsetDateTime,
    policy: &Policy,
) -> Result<Pki, PkiError> {
    let cps: Vec<String> = spec.control_planes.iter().map(|m| m.name.clone()).collect();
    let mut cas: BTreeMap<Authority, CaState> = BTreeMap::new();
    let mut items = Vec::new();
    let run = Run {
        spec,
        existing,
        now,
        policy,
    };
    for w in wanted(spec)? {
        let item = match &w.what {
            What::Ca { ca, cert_hosts } => {
                let (item, state) = authority(*ca, cert_hosts, &cps, spec, existing, now)?;
                cas.insert(*ca, state);
                item
            }
            What::Leaf {
                ca,
                spec: leaf,
                cert,
                key,
                hosts,
            } => run.leaf(&w, &cas[ca], leaf, (cert, key), hosts)?,
            What::Kubeconfig {
                spec: leaf,
                path,
                hosts,
            } => {
                let ca = &cas[&Authority::Kubernetes];
                run.kubeconfig(&w, ca, leaf, path, hosts)?
            }
            What::ServiceAccount => service_account(&w, &cps, existing)?,
        };
        items.push(item);
    }
    Ok(Pki { items })
}

/// One reconcile: what every credential is judged against.
struct Run<'a> {
    spec: &'a PkiSpec,
    existing: &'a Existing,
    now: OffsetDateTime,
    policy: &'a Policy,
}

impl Run<'_> {
    /// A certificate and key: kept when [`judge`] finds nothing wrong,
    /// otherwise issued by `ca` with a new key.
    fn leaf(
        &self,
        w: &Wanted,
        ca: &CaState,
        leaf: &LeafSpec,
        (cert, key): (&'static str, &'static str),
        hosts: &[String],
    ) -> Result<Item, PkiError> {
        let Run {
            existing,
            now,
            policy,
            ..
        } = *self;
        let found = existing.first(hosts, cert);
        let key_pem = found.and_then(|(h, _)| existing.get(h, key));
        let (cert_pem, key_pem, change, not_after) =
            match judge(found.map(|f| f.1), key_pem, leaf, ca, now, policy) {
                Verdict::Keep(info) => {
                    let (cert_pem, key_pem) = (found.expect("kept").1, key_pem.expect("kept"));
                    (cert_pem.to_vec(), key_pem.to_vec(), None, info.not_after)
                }
                Verdict::Issue(reason) => {
                    let new = ca.signer(w)?.sign(leaf, now)?;
                    let not_after = expiry(&new.cert_pem);
                    (
                        new.cert_pem.into(),
                        new.key_pem.into(),
                        Some(reason),
                        not_after,
                    )
                }
            };
        Ok(Item {
            files: vec![
                File::new(cert, hosts, cert_pem, MODE_PUBLIC),
                File::new(key, hosts, key_pem, MODE_SECRET),
            ],
            change,
            not_after: Some(not_after),
            ..item(w, Kind::Leaf)
        })
    }

    /// A kubeconfig: its embedded certificate is judged like a leaf's; a kept
    /// one is rendered again around the same certificate and key, and counts
    /// as a change ([`Reason::Rewritten`]) only if that changes the file.
    fn kubeconfig(
        &self,
        w: &Wanted,
        ca: &CaState,
        leaf: &LeafSpec,
        path: &'static str,
        hosts: &[String],
    ) -> Result<Item, PkiError> {
        let Run {
            spec,
            existing,
            now,
            policy,
        } = *self;
        let render = |cert_pem: String, key_pem: String| {
            Kubeconfig {
                cluster: spec.cluster_name.clone(),
                server: spec.api_server_url.clone(),
                user: leaf.common_name.clone(),
                ca_pem: ca.cert_pem.clone(),
                cert_pem,
                key_pem,
            }
            .render()
        };
        let file = |text: String| vec![File::new(path, hosts, text, MODE_SECRET)];
        let found = existing.first(hosts, path).map(|f| f.1);
        let reason = match found.map(|b| Kubeconfig::parse(path, b)) {
            None => Reason::Missing,
            Some(Err(e)) => Reason::Unreadable(e.to_string()),
            Some(Ok(kc)) => {
                let (cert, key) = (kc.cert_pem.as_bytes(), kc.key_pem.as_bytes());
                match judge(Some(cert), Some(key), leaf, ca, now, policy) {
                    Verdict::Issue(reason) => reason,
                    Verdict::Keep(info) => {
                        let text = render(kc.cert_pem, kc.key_pem)?;
                        let same = found == Some(text.as_bytes());
                        return Ok(Item {
                            files: file(text),
                            change: (!same).then_some(Reason::Rewritten),
                            not_after: Some(info.not_after),
                            ..item(w, Kind::Kubeconfig)
                        });
                    }
                }
            }
        };
        let new = ca.signer(w)?.sign(leaf, now)?;
        let not_after = expiry(&new.cert_pem);
        Ok(Item {
            files: file(render(new.cert_pem, new.key_pem)?),
            change: Some(reason),
            not_after: Some(not_after),
            ..item(w, Kind::Kubeconfig)
        })
    }
}

/// A CA as found (or just made): its certificate, and its key when given.
struct CaState {
    ca: Authority,
    cert_pem: String,
    signer: Option<Ca>,
}

impl CaState {
    fn signer(&self, leaf: &Wanted) -> Result<&Ca, PkiError> {
        self.signer.as_ref().ok_or_else(|| PkiError::CaKeyNeeded {
            ca: self.ca.name().to_string(),
            leaf: match &leaf.node {
                Some(n) => format!("{} ({n})", leaf.name),
                None => leaf.name.clone(),
            },
            path: self.ca.key_path().to_string(),
        })
    }
}

fn item(w: &Wanted, kind: Kind) -> Item {
    Item {
        name: w.name.clone(),
        node: w.node.clone(),
        kind,
        files: Vec::new(),
        change: None,
        not_after: None,
    }
}

/// The expiry of a certificate this crate just issued.
fn expiry(cert_pem: &str) -> OffsetDateTime {
    inspect::inspect(cert_pem.as_bytes())
        .expect("a certificate rcgen just issued parses")
        .not_after
}

/// A CA: kept when its certificate is on a control plane, generated only
/// when no control plane has it.
fn authority(
    ca: Authority,
    cert_hosts: &[String],
    cps: &[String],
    spec: &PkiSpec,
    existing: &Existing,
    now: OffsetDateTime,
) -> Result<(Item, CaState), PkiError> {
    let name = ca.name();
    let (cert_path, key_path) = (ca.cert_path(), ca.key_path());
    let item = |files, change, not_after| Item {
        name: name.to_string(),
        node: None,
        kind: Kind::Ca,
        files,
        change,
        not_after,
    };
    let Some(cert) = unanimous(existing, cps, cert_path, name)? else {
        let new = Ca::generate(&ca.common_name(&spec.cluster_name), now)?;
        let files = vec![
            File::new(cert_path, cert_hosts, new.cert_pem(), MODE_PUBLIC),
            File::new(key_path, cps, new.key_pem(), MODE_SECRET),
        ];
        let state = CaState {
            ca,
            cert_pem: new.cert_pem().to_string(),
            signer: Some(new.clone()),
        };
        let not_after = Some(new.info().not_after);
        return Ok((item(files, Some(Reason::Missing), not_after), state));
    };
    let bad = |reason: String| PkiError::BadCertificate {
        cert: name.to_string(),
        path: cert_path.to_string(),
        reason,
    };
    let cert_pem = std::str::from_utf8(cert).map_err(|e| bad(e.to_string()))?;
    let info = inspect::inspect(cert).map_err(bad)?;
    if !info.is_ca {
        return Err(PkiError::NotCa {
            cert: name.to_string(),
            path: cert_path.to_string(),
        });
    }
    let mut files = vec![File::new(cert_path, cert_hosts, cert, MODE_PUBLIC)];
    let signer = match unanimous(existing, cps, key_path, name)? {
        Some(key) => {
            let key_pem = std::str::from_utf8(key).map_err(|e| PkiError::BadKey {
                cert: name.to_string(),
                path: key_path.to_string(),
                reason: e.to_string(),
            })?;
            files.push(File::new(key_path, cps, key, MODE_SECRET));
            Some(Ca::load(name, cert_path, key_path, cert_pem, key_pem)?)
        }
        None => None,
    };
    let state = CaState {
        ca,
        cert_pem: cert_pem.to_string(),
        signer,
    };
    Ok((item(files, None, Some(info.not_after)), state))
}

/// The one copy the control planes hold of a CA file; an error when two
/// of them hold different ones.
fn unanimous<'a>(
    existing: &'a Existing,
    cps: &'a [String],
    path: &str,
    name: &str,
) -> Result<Option<&'a [u8]>, PkiError> {
    let Some((first, bytes)) = existing.first(cps, path) else {
        return Ok(None);
    };
    for h in cps {
        if let Some(other) = existing.get(h, path)
            && other != bytes
        {
            return Err(PkiError::CaDiverged {
                ca: name.to_string(),
                path: path.to_string(),
                first: first.to_string(),
                other: h.clone(),
            });
        }
    }
    Ok(Some(bytes))
}

/// The service-account key pair. Like a CA it is kept whenever its key
/// exists (a new key would invalidate every service-account token);
/// `sa.pub` is derived from `sa.key` and rewritten if it does not match.
fn service_account(w: &Wanted, cps: &[String], existing: &Existing) -> Result<Item, PkiError> {
    let found = existing.first(cps, SA_KEY);
    let parsed = found.map(|(_, b)| {
        std::str::from_utf8(b)
            .map_err(|e| e.to_string())
            .and_then(|s| KeyPair::from_pem(s).map_err(|e| e.to_string()))
    });
    let (key, key_pem, mut change) = match parsed {
        Some(Ok(key)) => {
            let pem = found.expect("parsed").1.to_vec();
            (key, pem, None)
        }
        other => {
            let reason = match other {
                Some(Err(why)) => Reason::Unreadable(why),
                _ => Reason::Missing,
            };
            let key = KeyPair::generate().map_err(|e| PkiError::Issue {
                cert: "sa".to_string(),
                reason: e.to_string(),
            })?;
            let pem = key.serialize_pem().into_bytes();
            (key, pem, Some(reason))
        }
    };
    let public = key.public_key_pem();
    let found_pub = found.and_then(|(h, _)| existing.get(h, SA_PUB));
    if change.is_none() && found_pub != Some(public.as_bytes()) {
        change = Some(match found_pub {
            None => Reason::Missing,
            Some(_) => Reason::KeyMismatch,
        });
    }
    Ok(Item {
        files: vec![
            File::new(SA_KEY, cps, key_pem, MODE_SECRET),
            File::new(SA_PUB, cps, public, MODE_PUBLIC),
        ],
        change,
        ..item(w, Kind::KeyPair)
    })
}

enum Verdict {
    Keep(CertInfo),
    Issue(Reason),
}

/// Whether a leaf found on a host is still what `spec` asks for, signed
/// by `ca`, with its own key, and not due for renewal.
fn judge(
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
    spec: &LeafSpec,
    ca: &CaState,
    now: OffsetDateTime,
    policy: &Policy,
) -> Verdict {
    use Verdict::Issue;
    let (Some(cert), Some(key)) = (cert, key) else {
        return Issue(Reason::Missing);
    };
    let info = match inspect::inspect(cert) {
        Ok(i) => i,
        Err(why) => return Issue(Reason::Unreadable(why)),
    };
    if !inspect::signed_by(cert, ca.cert_pem.as_bytes()) {
        return Issue(Reason::NotSignedByCa);
    }
    let key = match std::str::from_utf8(key)
        .map_err(|e| e.to_string())
        .and_then(|k| KeyPair::from_pem(k).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(why) => return Issue(Reason::Unreadable(format!("its key: {why}"))),
    };
    if !inspect::key_matches(cert, &key) {
        return Issue(Reason::KeyMismatch);
    }
    let subject = |cn: &str, o: Option<&String>| match o {
        Some(o) => format!("CN={cn}, O={o}"),
        None => format!("CN={cn}"),
    };
    let (was, want) = (
        subject(&info.common_name, info.organizations.first()),
        subject(&spec.common_name, spec.organization.as_ref()),
    );
    if was != want || info.organizations.len() > 1 {
        return Issue(Reason::SubjectChanged { was, now: want });
    }
    let have: BTreeSet<String> = crate::renew::spec_of(&info).sans().into_iter().collect();
    let want: BTreeSet<String> = spec.sans().into_iter().collect();
    if have != want {
        return Issue(Reason::SansChanged {
            added: want.difference(&have).cloned().collect(),
            removed: have.difference(&want).cloned().collect(),
        });
    }
    if info.server_auth != spec.usage.server() || info.client_auth != spec.usage.client() {
        return Issue(Reason::UsageChanged);
    }
    if policy.due(info.not_after, now) {
        return Issue(Reason::ExpiresSoon {
            not_after: info.not_after,
            days_left: info.days_left(now),
        });
    }
    if policy.renew_all {
        return Issue(Reason::RenewRequested);
    }
    Verdict::Keep(info)
}
