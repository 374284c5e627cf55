//! Reaching the API through the first control plane of the request that
//! answers.

use std::time::Duration;

use k8sup_cluster::AddonsRequest;

use crate::connect::{Connected, connect};

/// A client through the first control plane (in the request's order) that
/// holds the admin kubeconfig and whose API answers within `timeout`; or
/// why none did, host by host.
pub async fn reach(
    sessions: &k8sup_engine::Sessions,
    want: &AddonsRequest,
    timeout: Duration,
) -> Result<Connected, String> {
    let mut why = Vec::new();
    for t in &want.through {
        let Some(admin) = &t.admin_kubeconfig else {
            why.push(format!("{}: no admin kubeconfig yet", t.host));
            continue;
        };
        let Some(session) = sessions.get(&t.host) else {
            why.push(format!("{}: not connected", t.host));
            continue;
        };
        match connect(session, t.port, admin, timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => why.push(format!("through {}: {e}", t.host)),
        }
    }
    if why.is_empty() {
        why.push("no control plane in this run".into());
    }
    Err(why.join("; "))
}
