//! k8sup-templates: every file k8sup writes on a host for the cluster.
//!
//! The files live under the repository's `templates/` directory, one file
//! per template, named by their path there (`kubeconfig.yaml`,
//! `systemd/kubelet.service`, ...). `build.rs` embeds each of them into the
//! binary at build time, so a built `k8sup` needs nothing beside it, and
//! [`render`] fills one in with minijinja.
//!
//! Rules (ARCHITECTURE.md, "Templates"): every file the cluster layer puts on
//! a host comes from here; a template nothing uses is an error (the test
//! `tests/every_template_is_used.rs`); an undefined variable is an error, not
//! an empty string. The user's own workload files (the inventory's `files:`)
//! and the engine's bookkeeping (its run lock, its stat cache) are not
//! product templates and do not live here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, syntax::SyntaxConfig};
use serde::Serialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// Why a template could not be rendered. Names the template and, from
/// minijinja, the line and what failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("no template {name:?} under templates/ (there are: {known})")]
    NotFound { name: String, known: String },
    #[error("template {name}: {reason}")]
    Render { name: String, reason: String },
}

/// A set of templates, ready to render. [`Templates::embedded`] is the
/// product's set; tests build their own with [`Templates::new`].
pub struct Templates {
    env: Environment<'static>,
    names: Vec<&'static str>,
    /// Templates that failed to parse, with the parser's message: reported
    /// when one is rendered (and by the test that parses every template).
    broken: BTreeMap<&'static str, String>,
}

impl Templates {
    /// The templates of `templates/`, embedded at build time.
    pub fn embedded() -> &'static Templates {
        static SET: OnceLock<Templates> = OnceLock::new();
        SET.get_or_init(|| Templates::new(embedded::FILES))
    }

    /// A set from `(name, source)` pairs.
    pub fn new(files: &[(&'static str, &'static str)]) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // A file's last newline is part of the file; a block tag's own
        // newline is not (as the inventory's user templates render).
        let syntax = SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        let mut broken = BTreeMap::new();
        for (name, source) in files {
            if let Err(e) = env.add_template(name, source) {
                broken.insert(*name, describe(&e));
            }
        }
        Templates {
            env,
            names: files.iter().map(|(n, _)| *n).collect(),
            broken,
        }
    }

    /// Every template's name, sorted.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The templates that do not parse, with the reason.
    pub fn broken(&self) -> &BTreeMap<&'static str, String> {
        &self.broken
    }

    /// Render `name` with `context` (any serde value: its fields are the
    /// template's variables).
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, TemplateError> {
        if let Some(reason) = self.broken.get(name) {
            return Err(TemplateError::Render {
                name: name.to_string(),
                reason: reason.clone(),
            });
        }
        let template = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::NotFound {
                name: name.to_string(),
                known: if self.names.is_empty() {
                    "none".to_string()
                } else {
                    self.names.join(", ")
                },
            })?;
        template
            .render(Value::from(Serde(&context)))
            .map_err(|e| TemplateError::Render {
                name: name.to_string(),
                reason: describe(&e),
            })
    }
}

/// Render the embedded template `name` (see [`Templates::render`]).
pub fn render(name: &str, context: impl Serialize) -> Result<String, TemplateError> {
    Templates::embedded().render(name, context)
}

/// minijinja's message with the line it points at.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_with_the_context_keeping_the_last_newline() {
        let set = Templates::new(&[("a.conf", "name={{ host.name }}\n{% if on %}on\n{% endif %}")]);
        let out = set
            .render("a.conf", json!({"host": {"name": "cp-1"}, "on": true}))
            .unwrap();
        assert_eq!(out, "name=cp-1\non\n");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_template_and_line() {
        let set = Templates::new(&[("b.yaml", "a: 1\nb: {{ missing.field }}\n")]);
        let err = set.render("b.yaml", json!({})).unwrap_err().to_string();
        assert!(err.contains("b.yaml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_unknown_name_lists_the_templates_there_are() {
        let set = Templates::new(&[("x", "x"), ("y", "y")]);
        let err = set.render("z", json!({})).unwrap_err().to_string();
        assert!(err.contains("\"z\"") && err.contains("x, y"), "{err}");
    }

    #[test]
    fn a_template_that_does_not_parse_is_reported_by_name() {
        let set = Templates::new(&[("bad", "{% if %}")]);
        assert!(set.broken().contains_key("bad"));
        assert!(set.render("bad", json!({})).is_err());
    }

    /// Every file under templates/ is embedded, under its path there, and parses.
    #[test]
    fn every_file_of_templates_dir_is_embedded_and_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let mut on_disk = Vec::new();
        list(&root, &root, &mut on_disk);
        on_disk.sort();
        let embedded: Vec<String> = Templates::embedded()
            .names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(embedded, on_disk);
        assert!(
            Templates::embedded().broken().is_empty(),
            "{:#?}",
            Templates::embedded().broken()
        );
    }

    fn list(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                list(root, &p, out);
            } else {
                let name = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                if name != "README.md" {
                    out.push(name);
                }
            }
        }
    }
}
