//! The russh client handler: where the server's host key is judged.
//!
//! russh calls `check_server_key` during the key exchange, before any
//! authentication or command. Refusing here means nothing ever runs on a host
//! whose identity is wrong.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use russh::client;
use russh::keys::PublicKeyOrCertificate;

use crate::error::SshError;
use crate::known_hosts::{self, KnownHosts, Verdict};
use crate::spec::HostKeyPolicy;

/// Handler error: either russh's, or our verdict on the host key (kept whole so
/// the caller gets the precise message instead of russh's generic `UnknownKey`).
#[derive(Debug)]
pub(crate) enum HandlerError {
    Russh(russh::Error),
    HostKey(Box<SshError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

pub(crate) struct ClientHandler {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub known: KnownHosts,
    pub policy: HostKeyPolicy,
}

impl ClientHandler {
    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn unknown(&self, fp: String) -> SshError {
        let files = self.known.files();
        SshError::HostKeyUnknown {
            host: self.name.clone(),
            target: self.target(),
            addr: self.host.clone(),
            port: self.port,
            fingerprint: fp,
            searched: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            first_file: files
                .first()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        }
    }

    fn first_file(&self) -> Option<PathBuf> {
        self.known.files().first().cloned()
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let key = presented.public_key();
        let fp = known_hosts::fingerprint(key.key_data());
        let fail = |e: SshError| Err(HandlerError::HostKey(Box::new(e)));
        match self.known.verify(&self.host, self.port, presented, now) {
            Verdict::Trusted => {
                tracing::debug!(host = %self.name, fingerprint = %fp, "host key verified");
                Ok(true)
            }
            Verdict::Mismatch {
                file,
                line,
                algorithm,
            } => fail(SshError::HostKeyMismatch {
                host: self.name.clone(),
                target: self.target(),
                lookup: known_hosts::lookup_name(&self.host, self.port),
                file,
                line,
                algorithm,
                fingerprint: fp,
            }),
            Verdict::Rejected(reason) => fail(SshError::HostKeyRejected {
                host: self.name.clone(),
                target: self.target(),
                reason,
            }),
            Verdict::Unknown => match (self.policy, self.first_file()) {
                (HostKeyPolicy::AcceptNew, Some(file)) => {
                    if let Err(e) = known_hosts::learn(&file, &self.host, self.port, key.key_data())
                    {
                        return fail(SshError::io(
                            &self.name,
                            format!("recording host key in {}", file.display()),
                            e,
                        ));
                    }
                    tracing::info!(host = %self.name, fingerprint = %fp, file = %file.display(), "new host key recorded (accept-new)");
                    Ok(true)
                }
                _ => fail(self.unknown(fp)),
            },
        }
    }
}
