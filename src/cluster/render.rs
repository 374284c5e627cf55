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
