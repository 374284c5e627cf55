//! Unified diffs of text files, for the plan.

use similar::TextDiff;

/// A unified diff from the host's content to the wanted one, with 3 lines of
/// context. `None` when either side is not UTF-8 text.
pub fn unified(path: &str, current: &[u8], wanted: &[u8]) -> Option<String> {
    unified_from(path, "on the host", current, wanted)
}

/// [`unified`], from content that is `whence` (e.g. "in the cluster", for
/// what a service phase compares).
pub fn unified_from(path: &str, whence: &str, current: &[u8], wanted: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(current).ok()?;
    let new = std::str::from_utf8(wanted).ok()?;
    let diff = TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .missing_newline_hint(true)
        .header(&format!("{path} ({whence})"), &format!("{path} (wanted)"))
        .to_string();
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines_with_context() {
        let d = unified("/etc/x.conf", b"a\nb\nc\n", b"a\nB\nc\n").unwrap();
        assert!(d.contains("--- /etc/x.conf (on the host)"), "{d}");
        assert!(d.contains("+++ /etc/x.conf (wanted)"), "{d}");
        assert!(d.contains("-b\n+B\n"), "{d}");
        assert!(d.contains(" a\n"), "{d}");
    }

    #[test]
    fn new_file_is_all_additions_and_binary_has_none() {
        let d = unified("/x", b"", b"one\ntwo\n").unwrap();
        assert!(d.contains("+one\n+two\n"), "{d}");
        assert!(unified("/x", &[0xff, 0xfe], b"a").is_none());
    }
}
