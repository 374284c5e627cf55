//! Rendering file content with minijinja.
//!
//! A template sees three values: `host` (the host being configured), `vars`
//! (its variables) and `inventory` (the whole inventory), each given by the
//! caller as anything serializable, so the engine does not depend on the
//! inventory crate. Undefined variables are errors (`UndefinedBehavior::Strict`):
//! a typo must fail the plan, not write an empty string into a config file.
//! Nothing is HTML-escaped, a trailing newline is kept and, as in Ansible,
//! the newline after a block tag (`{% for %}`) is dropped.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::EngineError;

/// What a template sees.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    host: Value,
    vars: Value,
    inventory: Value,
}

impl TemplateContext {
    pub fn new(host: &impl Serialize, vars: &impl Serialize, inventory: &impl Serialize) -> Self {
        TemplateContext {
            host: Value::from(Serde(host)),
            vars: Value::from(Serde(vars)),
            inventory: Value::from(Serde(inventory)),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Like Ansible: keep the file's last newline, drop the newline after a block tag.
    let syntax = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .build()
        .expect("the default delimiters are valid");
    env.set_syntax(syntax);
    env
}

/// Render `source` for `host`. Errors name the host, the template, the line and what failed.
pub(crate) fn render(
    host: &str,
    name: &str,
    source: &str,
    ctx: Option<&TemplateContext>,
) -> Result<String, EngineError> {
    let fail = |reason: String| EngineError::Template {
        host: host.to_string(),
        template: name.to_string(),
        reason,
    };
    let Some(ctx) = ctx else {
        return Err(fail(
            "no template context was given for this host (DesiredState::with_context)".into(),
        ));
    };
    let env = environment();
    let value = minijinja::context! { host => ctx.host.clone(), vars => ctx.vars.clone(), inventory => ctx.inventory.clone() };
    env.render_named_str(name, source, value).map_err(|e| {
        let line = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
        let mut reason = format!(
            "{line}{}",
            e.detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.kind().to_string())
        );
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            reason.push_str(
                " (an undefined variable: define it in the host's vars, or fix the name)",
            );
        }
        fail(reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> TemplateContext {
        TemplateContext::new(
            &json!({"name": "cp-1", "address": "10.0.0.11"}),
            &json!({"port": 8080}),
            &json!({"hosts": [{"name": "cp-1", "address": "10.0.0.11"}, {"name": "w-1", "address": "10.0.0.12"}]}),
        )
    }

    #[test]
    fn renders_host_vars_and_inventory() {
        let src = "listen {{ host.address }}:{{ vars.port }}\n{% for h in inventory.hosts %}peer {{ h.address }}\n{% endfor %}";
        let out = render("cp-1", "demo.conf.j2", src, Some(&ctx())).unwrap();
        assert_eq!(
            out,
            "listen 10.0.0.11:8080\npeer 10.0.0.11\npeer 10.0.0.12\n"
        );
    }

    #[test]
    fn undefined_variable_is_an_error_naming_template_and_line() {
        let err = render(
            "cp-1",
            "demo.conf.j2",
            "a\nport={{ vars.prot }}\n",
            Some(&ctx()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cp-1"), "{err}");
        assert!(err.contains("demo.conf.j2"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn no_html_escaping() {
        let c = TemplateContext::new(&json!({}), &json!({"s": "<a & b>"}), &json!({}));
        assert_eq!(
            render("h", "x.html", "{{ vars.s }}", Some(&c)).unwrap(),
            "<a & b>"
        );
    }
}
