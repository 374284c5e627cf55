//! One exec per host for a phased run: the caller's facts probe, the run
//! lock, and one observation per phase ("section"), each with the manifest of
//! that phase's resources on the host.
//!
//! Why one section per phase: a phase is applied (and its drift checked under
//! the lock, by the first script that changes the host) with the manifest of
//! its own resources, so the fingerprint it is checked against must be the
//! SHA-256 of exactly what `k8sup_observe` prints for that manifest. Running
//! the observation once per section costs a few more forks in the same exec,
//! never another round trip.
//!
//! Output, in order: `K8SUP-FACTS` / the probe's lines / `K8SUP-FACTS-END`
//! (only with a probe), the lock line, then `K8SUP-SECTION` before each
//! section's observation.

use crate::desired::ResolvedState;
use crate::error::EngineError;
use crate::facts::Facts;
use crate::observe::{self, Observation};
use crate::script;
use crate::transport::Transport;

const FACTS_BEGIN: &str = "K8SUP-FACTS";
const FACTS_END: &str = "K8SUP-FACTS-END";
const SECTION: &str = "K8SUP-SECTION";

/// What one exec told about a host.
#[derive(Debug, Clone)]
pub(crate) struct HostObservation {
    /// The probe's facts (`None` without a probe).
    pub facts: Option<Facts>,
    /// One observation per section, in order.
    pub sections: Vec<Observation>,
}

/// The script: facts, lock, and each section's observation.
pub(crate) fn script(probe: Option<&str>, sections: &[Vec<&ResolvedState>]) -> String {
    let manifests: Vec<String> = sections.iter().map(|s| observe::manifest(s)).collect();
    let mut s = observe::functions(manifests.first().map(String::as_str).unwrap_or(""));
    s.push('\n');
    if let Some(p) = probe {
        // A subshell: the probe may `exit`, `set -e` or change directory;
        // its stderr is not part of the facts.
        s.push_str(&format!(
            "printf '%s\\n' {FACTS_BEGIN}\n( {p}\n) </dev/null 2>/dev/null\nprintf '\\n%s\\n' {FACTS_END}\n"
        ));
    }
    s.push_str("k8sup_lock\n");
    for m in &manifests {
        s.push_str(&format!(
            "printf '%s\\n' {SECTION}\nK8SUP_MANIFEST={}\nk8sup_observe\n",
            k8sup_ssh::quote(m)
        ));
    }
    s
}

/// Observe one host in one exec (see the module docs).
pub(crate) async fn observe_sections<T: Transport>(
    session: &T,
    probe: Option<&str>,
    sections: &[Vec<&ResolvedState>],
) -> Result<HostObservation, EngineError> {
    let host = session.name().to_string();
    let out = script::run(session, &script(probe, sections)).await?;
    if !out.success() {
        return Err(EngineError::remote(
            &host,
            "observing the host",
            &out.stderr_str(),
        ));
    }
    parse(&host, &out.stdout, probe.is_some(), sections)
}

pub(crate) fn parse(
    host: &str,
    stdout: &[u8],
    with_facts: bool,
    sections: &[Vec<&ResolvedState>],
) -> Result<HostObservation, EngineError> {
    let bad = |reason: String| EngineError::Observe {
        host: host.to_string(),
        reason,
    };
    let text = std::str::from_utf8(stdout).map_err(|_| bad("output is not UTF-8".into()))?;
    let (facts, rest) = if with_facts {
        let body = text
            .strip_prefix(&format!("{FACTS_BEGIN}\n"))
            .ok_or_else(|| bad("the facts probe did not start".into()))?;
        let end = format!("\n{FACTS_END}\n");
        let (f, rest) = body
            .split_once(&end)
            .ok_or_else(|| bad("the facts probe's output did not end".into()))?;
        (Some(Facts::parse(f)), rest)
    } else {
        (None, text)
    };
    let (lock_line, rest) = rest
        .split_once('\n')
        .ok_or_else(|| bad("no lock line".into()))?;
    let marker = format!("{SECTION}\n");
    let bodies: Vec<&str> = rest
        .strip_prefix(&marker)
        .map(|r| r.split(&marker).collect())
        .unwrap_or_default();
    if bodies.len() != sections.len() {
        return Err(bad(format!(
            "{} of {} observations came back",
            bodies.len(),
            sections.len()
        )));
    }
    let mut out = Vec::with_capacity(bodies.len());
    for (body, states) in bodies.into_iter().zip(sections) {
        let one = format!("{lock_line}\n{body}");
        out.push(observe::parse(host, one.as_bytes(), states)?);
    }
    Ok(HostObservation {
        facts,
        sections: out,
    })
}
