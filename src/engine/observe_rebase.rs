//! Reusing an observation made with one manifest for another, without asking
//! the host again.
//!
//! Why: a phased run observes each phase with the manifest of its desired
//! state under the *expected* facts (the facts come back in the same exec).
//! When the real facts change only file contents (a version in a config),
//! the manifest differs only in the wanted hashes, and everything the plan
//! needs is already there: each path's state and, when the content differs
//! and is small, the content itself. The host's fingerprint, though, is the
//! SHA-256 of what `k8sup_observe` prints *for the manifest apply will use*,
//! so the output is rebuilt for the new manifest, byte for byte, from the
//! old one's lines, and parsed again. When something cannot be rebuilt (a
//! path, guard, probe or unit list that was not observed, or a differing
//! content that did not come back), the caller observes again.

use base64::Engine as _;

use crate::desired::ResolvedState;
use crate::observe::{self, Observation, PathState};

/// `obs` (made with manifest `old`) as if made with the manifest of `states`.
pub(crate) fn rebase(
    obs: &Observation,
    old: &str,
    states: &[&ResolvedState],
) -> Option<Observation> {
    let new = observe::manifest(states);
    if new == old {
        return Some(obs.clone());
    }
    let old_lines: std::collections::HashSet<&str> = old.lines().collect();
    let mut text = String::from("V\t1\n");
    let mut units = Vec::new();
    for line in new.lines() {
        let mut f = line.split('\t');
        match f.next() {
            Some("P") => {
                let path = f.next()?;
                let want = f.next()?;
                let max: i64 = f.next()?.parse().ok()?;
                let raw = obs.raw.get(&format!("P:{path}"))?;
                let p_line = raw.lines().next()?;
                text.push_str(p_line);
                text.push('\n');
                // The content line k8sup_observe prints for this want.
                if let Some(PathState::File { size, sha256, .. }) = obs.paths.get(path)
                    && want != "-"
                    && sha256 != want
                    && max >= 0
                    && *size <= max as u64
                {
                    let content = obs.contents.get(path)?;
                    text.push_str(&format!(
                        "B\t{path}\t{}\n",
                        base64::engine::general_purpose::STANDARD.encode(content)
                    ));
                }
            }
            Some("U") => units.push(f.next()?.to_string()),
            Some("C") | Some("X") => {
                // The same guard (same check) was evaluated.
                if !old_lines.contains(line) {
                    return None;
                }
                let name = f.next()?;
                text.push_str(obs.raw.get(&format!("G:{name}"))?);
                text.push('\n');
            }
            Some("Q") => {
                let name = f.next()?;
                text.push_str(obs.raw.get(&format!("Q:{name}"))?);
                text.push('\n');
            }
            Some("") | None => {}
            Some(_) => return None,
        }
    }
    if !units.is_empty() {
        if units != obs.units_asked {
            return None;
        }
        text.push_str(&obs.s_text);
    }
    let full = format!("{}\n{text}", obs.lock_line);
    let mut rebased = observe::parse(&obs.host, full.as_bytes(), states).ok()?;
    rebased.claimed = obs.claimed;
    if obs.claimed {
        rebased.lock = None;
    }
    Some(rebased)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Content, sha256_hex};
    use crate::desired::DesiredState;
    use crate::resource::Resource;

    #[tokio::test]
    async fn a_content_change_is_rebased_with_the_output_the_host_would_print() {
        let old = DesiredState::new("h")
            .with(Resource::file("/etc/a", Content::text("v=1\n")))
            .resolve()
            .await
            .unwrap();
        let new = DesiredState::new("h")
            .with(Resource::file("/etc/a", Content::text("v=2\n")))
            .resolve()
            .await
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("v=1\n");
        // The host has v=1: under `old` nothing differs, so no content came back.
        let out_old = format!(
            "L\t-\nV\t1\nP\t/etc/a\tfile\t644\troot\troot\t4\t{}\n",
            sha256_hex(b"v=1\n")
        );
        let obs = observe::parse("h", out_old.as_bytes(), &[&old]).unwrap();
        assert!(
            rebase(&obs, &observe::manifest(&[&old]), &[&new]).is_none(),
            "the diff needs the content, which did not come back"
        );
        // The host has v=0: the content came back, and the rebased output is
        // what the host prints under `new` (the same here).
        let out = format!(
            "L\t-\nV\t1\nP\t/etc/a\tfile\t644\troot\troot\t4\t{}\nB\t/etc/a\t{}\n",
            sha256_hex(b"v=0\n"),
            base64::engine::general_purpose::STANDARD.encode("v=0\n")
        );
        let _ = b64;
        let obs = observe::parse("h", out.as_bytes(), &[&old]).unwrap();
        let r = rebase(&obs, &observe::manifest(&[&old]), &[&new]).unwrap();
        let direct = observe::parse("h", out.as_bytes(), &[&new]).unwrap();
        assert_eq!(r.fingerprint, direct.fingerprint);
        assert_eq!(r.contents, direct.contents);
        // The host already has v=2: under `old` its content came back; under
        // `new` the host prints no content line, so neither does the rebase.
        let out = format!(
            "L\t-\nV\t1\nP\t/etc/a\tfile\t644\troot\troot\t4\t{}\nB\t/etc/a\t{}\n",
            sha256_hex(b"v=2\n"),
            base64::engine::general_purpose::STANDARD.encode("v=2\n")
        );
        let obs = observe::parse("h", out.as_bytes(), &[&old]).unwrap();
        let r = rebase(&obs, &observe::manifest(&[&old]), &[&new]).unwrap();
        let host_prints = format!(
            "L\t-\nV\t1\nP\t/etc/a\tfile\t644\troot\troot\t4\t{}\n",
            sha256_hex(b"v=2\n")
        );
        assert_eq!(
            r.fingerprint,
            observe::parse("h", host_prints.as_bytes(), &[&new])
                .unwrap()
                .fingerprint
        );
    }
}
