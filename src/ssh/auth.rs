//! Public-key authentication: agent keys and identity files, in OpenSSH's order.
//!
//! OpenSSH offers (1) configured identity files whose key the agent holds, signed by
//! the agent, (2) the agent's other keys, (3) the remaining identity files. We do
//! the same, so a setup that works with `ssh` works here. Every attempt is noted,
//! and a failure lists them: "why did login fail" is then answered by the error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::MethodKind;
use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use crate::config::Target;
use crate::error::SshError;
use crate::handler::ClientHandler;
use crate::known_hosts::fingerprint;

/// An identity file as found on disk.
struct FileKey {
    path: PathBuf,
    /// The decrypted key; `None` for a passphrase-protected key.
    key: Option<Arc<PrivateKey>>,
    /// Its public half (from the key itself, or `path.pub` for an encrypted key).
    public: Option<PublicKey>,
}

fn load_file_key(path: &Path, notes: &mut Vec<String>) -> Option<FileKey> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("{} (cannot read: {e})", path.display()));
            return None;
        }
    };
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => {
            let public = key.public_key().clone();
            Some(FileKey {
                path: path.to_path_buf(),
                key: Some(Arc::new(key)),
                public: Some(public),
            })
        }
        Err(russh::keys::Error::KeyIsEncrypted) => {
            // The OpenSSH format keeps the public key in clear; fall back to `.pub`.
            let public = PrivateKey::from_openssh(&text)
                .map(|k| k.public_key().clone())
                .ok()
                .or_else(|| russh::keys::load_public_key(path.with_extension("pub")).ok())
                .or_else(|| russh::keys::load_public_key(format!("{}.pub", path.display())).ok());
            Some(FileKey {
                path: path.to_path_buf(),
                key: None,
                public,
            })
        }
        Err(e) => {
            notes.push(format!(
                "{} (not a usable private key: {e})",
                path.display()
            ));
            None
        }
    }
}

fn describe(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        fingerprint(key.key_data())
    )
}

/// Whether the server still accepts public keys after a failure.
fn publickey_still_allowed(r: &AuthResult) -> bool {
    match r {
        AuthResult::Success => true,
        AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods.is_empty() || remaining_methods.contains(&MethodKind::PublicKey),
    }
}

/// Log in as `target.user`, or fail with an error listing everything tried.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    name: &str,
    target: &Target,
) -> Result<(), SshError> {
    let mut notes: Vec<String> = Vec::new();
    let files: Vec<FileKey> = target
        .identity_files
        .iter()
        .filter_map(|p| load_file_key(p, &mut notes))
        .collect();

    let mut agent = None;
    let mut agent_ids: Vec<AgentIdentity> = Vec::new();
    if let Some(socket) = &target.agent {
        match AgentClient::connect_uds(socket).await {
            Ok(mut a) => match a.request_identities().await {
                Ok(ids) => {
                    agent_ids = ids;
                    agent = Some(a);
                }
                Err(e) => notes.push(format!(
                    "ssh-agent at {} (listing keys failed: {e})",
                    socket.display()
                )),
            },
            Err(e) => notes.push(format!(
                "ssh-agent at {} (unreachable: {e})",
                socket.display()
            )),
        }
    }

    // Order: agent keys that match identity files (file order), other agent keys,
    // then identity files the agent does not hold.
    let in_agent = |pk: &Option<PublicKey>| {
        pk.as_ref().and_then(|pk| {
            agent_ids
                .iter()
                .position(|id| id.public_key().key_data() == pk.key_data())
        })
    };
    let mut agent_order: Vec<usize> = files.iter().filter_map(|f| in_agent(&f.public)).collect();
    if !target.identities_only {
        for i in 0..agent_ids.len() {
            if !agent_order.contains(&i) {
                agent_order.push(i);
            }
        }
    }

    let rsa_hash = if agent_ids
        .iter()
        .any(|id| id.public_key().algorithm().is_rsa())
        || files
            .iter()
            .any(|f| f.public.as_ref().is_some_and(|p| p.algorithm().is_rsa()))
    {
        handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
            .or(Some(HashAlg::Sha256))
    } else {
        None
    };

    let mut tried: Vec<String> = Vec::new();
    if let Some(agent) = agent.as_mut() {
        for i in agent_order {
            let id = &agent_ids[i];
            let label = match id {
                AgentIdentity::PublicKey { key, comment } => {
                    format!("agent key {} {comment}", describe(key))
                }
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    format!("agent certificate {:?} {comment}", certificate.key_id())
                }
            };
            let res = match id {
                AgentIdentity::PublicKey { key, .. } => {
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash
                    } else {
                        None
                    };
                    handle
                        .authenticate_publickey_with(&target.user, key.clone(), hash, agent)
                        .await
                }
                AgentIdentity::Certificate { certificate, .. } => {
                    handle
                        .authenticate_certificate_with(
                            &target.user,
                            certificate.clone(),
                            rsa_hash,
                            agent,
                        )
                        .await
                }
            };
            match res {
                Ok(r) if r.success() => {
                    tracing::debug!(host = %name, method = %label, "authenticated");
                    return Ok(());
                }
                Ok(r) => {
                    tried.push(format!("{} (rejected)", label.trim_end()));
                    if !publickey_still_allowed(&r) {
                        break;
                    }
                }
                Err(e) => tried.push(format!("{} (agent failed to sign: {e})", label.trim_end())),
            }
        }
    }

    for f in &files {
        if in_agent(&f.public).is_some() {
            continue; // already offered through the agent
        }
        let Some(key) = &f.key else {
            tried.push(format!(
                "{} (passphrase-protected and not loaded in ssh-agent: run `ssh-add {}`)",
                f.path.display(),
                f.path.display()
            ));
            continue;
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        let label = format!("{} ({})", f.path.display(), describe(key.public_key()));
        match handle
            .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
        {
            Ok(r) if r.success() => {
                tracing::debug!(host = %name, method = %label, "authenticated");
                return Ok(());
            }
            Ok(r) => {
                tried.push(format!("{label} (rejected)"));
                if !publickey_still_allowed(&r) {
                    break;
                }
            }
            Err(e) => {
                // Typically sshd hanging up after MaxAuthTries ("Too many
                // authentication failures"): report what was tried so far.
                tried.push(format!("{label} (the server closed the connection: {e})"));
                break;
            }
        }
    }

    tried.extend(notes);
    if tried.is_empty() {
        tried.push(
            "nothing: no ssh-agent ($SSH_AUTH_SOCK unset, IdentityAgent none or use_agent off) and no identity file"
                .into(),
        );
    }
    Err(SshError::AuthFailed {
        host: name.to_string(),
        user: target.user.clone(),
        target: target.display(),
        tried: tried.join("; "),
    })
}
