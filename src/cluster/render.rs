//! Rendering a product template into engine content, with errors in the
//! engine's terms (the host and the template named).

use k8sup_engine::{Content, EngineError};
use serde::Serialize;

/// `templates/<name>` rendered for `host`.
pub fn template(host: &str, name: &str, context: impl Serialize) -> Result<Content, EngineError> {
    k8sup_templates::render(name, context)
        .map(Content::text)
        .map_err(|e| EngineError::Invalid {
            host: host.to_string(),
            reason: format!("rendering {name}: {e}"),
        })
}

/// Extra command-line flags as systemd continuation lines, appended after a
/// unit's last default flag (empty when there are none).
pub fn extra_args(args: &[String]) -> String {
    args.iter().map(|a| format!(" \\\n  {a}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_args_continue_the_command_line() {
        assert_eq!(super::extra_args(&[]), "");
        assert_eq!(
            super::extra_args(&["--v=2".into(), "--a=b".into()]),
            " \\\n  --v=2 \\\n  --a=b"
        );
    }
}
