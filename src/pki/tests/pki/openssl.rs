//! The real `openssl` CLI as the judge of what k8sup issues (Debian package
//! `openssl`, listed in tests/lib/prereqs.sh).

use std::path::PathBuf;
use std::process::Command;

use k8sup_pki::time::OffsetDateTime;

pub struct Scratch {
    dir: tempfile::TempDir,
    n: usize,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
            n: 0,
        }
    }

    pub fn put(&mut self, bytes: impl AsRef<[u8]>) -> PathBuf {
        self.n += 1;
        let p = self.dir.path().join(format!("f{}.pem", self.n));
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `openssl verify -CAfile CA [-purpose P] CERT`. Purposes: `sslserver`
/// (needs serverAuth), `sslclient` (needs clientAuth).
pub fn verify(ca: &[u8], cert: &[u8], purpose: Option<&str>) -> Result<(), String> {
    let mut s = Scratch::new();
    let (ca, cert) = (s.put(ca), s.put(cert));
    let mut args = vec!["verify", "-CAfile", ca.to_str().unwrap()];
    if let Some(p) = purpose {
        args.extend(["-purpose", p]);
    }
    args.push(cert.to_str().unwrap());
    run(&args).map(|_| ())
}

/// `openssl verify -attime T`: as if the clock said `at`.
pub fn verify_at(ca: &[u8], cert: &[u8], at: OffsetDateTime) -> Result<(), String> {
    let mut s = Scratch::new();
    let (ca, cert) = (s.put(ca), s.put(cert));
    let at = at.unix_timestamp().to_string();
    run(&[
        "verify",
        "-attime",
        &at,
        "-CAfile",
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
    ])
    .map(|_| ())
}

/// `openssl x509 -noout -text`.
pub fn x509_text(cert: &[u8]) -> String {
    let mut s = Scratch::new();
    let p = s.put(cert);
    run(&["x509", "-noout", "-text", "-in", p.to_str().unwrap()]).unwrap()
}

/// `openssl x509 -noout -subject`, e.g. `subject=CN = admin, O = system:masters`.
pub fn subject(cert: &[u8]) -> String {
    let mut s = Scratch::new();
    let p = s.put(cert);
    run(&["x509", "-noout", "-subject", "-in", p.to_str().unwrap()])
        .unwrap()
        .trim()
        .to_string()
}

/// The public key of a certificate, and of a private key, as PEM: equal
/// when the key belongs to the certificate.
pub fn cert_pubkey(cert: &[u8]) -> String {
    let mut s = Scratch::new();
    let p = s.put(cert);
    run(&["x509", "-noout", "-pubkey", "-in", p.to_str().unwrap()]).unwrap()
}

pub fn key_pubkey(key: &[u8]) -> String {
    let mut s = Scratch::new();
    let p = s.put(key);
    run(&["pkey", "-pubout", "-in", p.to_str().unwrap()]).unwrap()
}
