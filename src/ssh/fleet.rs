//! Connecting to a whole fleet at once.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::OnceCell;

use crate::config;
use crate::error::SshError;
use crate::session::Session;
use crate::spec::ConnectSpec;

/// One bastion connection, opened by the first host that needs it.
type SharedJump = Arc<OnceCell<Result<Session, Arc<SshError>>>>;

/// Connect to every host, at most `concurrency` handshakes at a time.
///
/// Each host gets its own result, in the order of `specs`: one unreachable or
/// misconfigured host never hides the others, and the caller decides whether to
/// go on with the hosts that answered.
///
/// Hosts behind the same bastion share one connection to it (each gets its own
/// tunnel): fifty parallel logins to one bastion would otherwise trip sshd's
/// `MaxStartups` and be dropped at random.
pub async fn connect_all(
    specs: Vec<ConnectSpec>,
    concurrency: usize,
) -> Vec<(String, Result<Session, SshError>)> {
    let mut jumps: HashMap<String, SharedJump> = HashMap::new();
    let prepared: Vec<_> = specs
        .into_iter()
        .map(|spec| {
            let resolved = config::resolve(&spec);
            let jump = resolved
                .as_ref()
                .ok()
                .and_then(|t| t.proxy_jump.clone())
                .map(|j| {
                    let cell = jumps.entry(config::jump_key(&j)).or_default().clone();
                    (j, cell)
                });
            (spec, resolved, jump)
        })
        .collect();

    stream::iter(prepared)
        .map(|(spec, resolved, jump)| async move {
            let result = match resolved {
                Err(e) => Err(e),
                Ok(target) => match jump {
                    None => Session::connect_resolved(&spec, target, None).await,
                    Some((jump_spec, cell)) => {
                        let shared = cell
                            .get_or_init(|| async {
                                Session::connect(&jump_spec).await.map_err(Arc::new)
                            })
                            .await;
                        match shared {
                            Ok(via) => {
                                Session::connect_resolved(&spec, target, Some(via.clone())).await
                            }
                            Err(e) => Err(SshError::Jump {
                                host: spec.name.clone(),
                                source: e.clone(),
                            }),
                        }
                    }
                },
            };
            if let Err(e) = &result {
                tracing::warn!(host = %spec.name, error = %e, "connection failed");
            }
            (spec.name, result)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}
