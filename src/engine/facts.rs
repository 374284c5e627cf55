//! Host facts: `key=value` lines printed by a caller-supplied shell probe
//! that runs in the same exec as the observation (see `observe_many.rs`).
//!
//! Why here and generic: which version is installed, or whether a cluster
//! already exists, decides what a host must look like, so facts are an input
//! of the desired state (see [`crate::Phase`]). Gathering them in the
//! observation's exec keeps a no-op apply at one exec per host. The engine
//! gives the keys no meaning; the caller's probe (e.g. the CLI's
//! `facts/gather.sh`) and its phases do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One host's facts, by key. Empty when the probe printed nothing or did not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Facts(pub BTreeMap<String, String>);

impl Facts {
    /// Parse `key=value` lines. Lines without `=` (or with an empty key) are
    /// ignored; a key given twice keeps its last value; values keep their
    /// spaces (only the line's `\r` is dropped).
    pub fn parse(text: &str) -> Facts {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some((k, v)) = line.split_once('=')
                && !k.is_empty()
            {
                map.insert(k.to_string(), v.to_string());
            }
        }
        Facts(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These facts with `key` set (for hints and tests).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_lines() {
        let f = Facts::parse("a=1\nnoise\n=x\nb=two words=yes\r\na=3\n");
        assert_eq!(f.get("a"), Some("3"));
        assert_eq!(f.get("b"), Some("two words=yes"));
        assert_eq!(f.0.len(), 2);
    }
}
