//! `${ENV}` substitution in scalar values, so that secrets and per-site values
//! stay out of the inventory file.
//!
//! Syntax: `${VAR}`, `${VAR:-default}` (default when VAR is unset or empty),
//! and `$${` for a literal `${`. A `$` not followed by `{` is literal.
//!
//! Substitution happens on the parsed tree, not on the text: positions stay
//! those of the file as written, and a value such as `a: b` coming from the
//! environment stays a string instead of turning into YAML structure. Keys are
//! never substituted. Substituted values may be secrets, so scalars remember
//! which variables went into them and messages never echo such values.

use crate::diagnostic::Sink;
use crate::yaml::{Kind, Spanned};

/// Substitute every value scalar under `yaml`, reporting each problem.
pub(crate) fn substitute_tree(
    yaml: &mut Spanned,
    env: &dyn Fn(&str) -> Option<String>,
    sink: &mut Sink<'_>,
) {
    match &mut yaml.kind {
        Kind::Scalar(s) => {
            if !s.value.contains('$') {
                return;
            }
            match expand(&s.value, env) {
                Ok((value, vars)) => {
                    s.value = value;
                    s.env = vars;
                }
                Err(problems) => {
                    s.poisoned = true;
                    let source = sink.source();
                    let text = source
                        .get(yaml.pos.byte..yaml.pos.byte + yaml.pos.len)
                        .unwrap_or("");
                    let mut search_from = 0;
                    for p in problems {
                        // Find the offending `${...` in the text as written
                        // (quoting and escapes can shift it from the value).
                        let pos = match text.get(search_from..).and_then(|t| t.find(&p.token)) {
                            Some(i) => {
                                search_from += i + p.token.len();
                                yaml.pos.at_offset(
                                    source,
                                    search_from - p.token.len(),
                                    p.token.len(),
                                )
                            }
                            None => yaml.pos,
                        };
                        let d = sink.error(pos, p.message);
                        if let Some(h) = p.help {
                            d.help(h);
                        }
                    }
                }
            }
        }
        Kind::Seq(items) => items.iter_mut().for_each(|n| substitute_tree(n, env, sink)),
        Kind::Map(entries) => entries
            .iter_mut()
            .for_each(|e| substitute_tree(&mut e.value, env, sink)),
    }
}

/// One problem in one scalar; `token` is its text as written, to locate it.
#[derive(Debug, PartialEq)]
pub(crate) struct Problem {
    pub token: String,
    pub message: String,
    pub help: Option<String>,
}

/// Expand `text`; on success also return the names of the variables used.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), Vec<Problem>> {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with("$${") {
            out.push_str("${");
            rest = &rest[3..];
            continue;
        }
        if !rest.starts_with("${") {
            out.push('$');
            rest = &rest[1..];
            continue;
        }
        let Some(end) = rest.find('}') else {
            problems.push(Problem {
                token: rest.to_owned(),
                message: "unterminated '${' in value".to_owned(),
                help: Some("close it with '}', or write '$${' for a literal '${'".to_owned()),
            });
            break;
        };
        let token = &rest[..=end];
        let inner = &rest[2..end];
        rest = &rest[end + 1..];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_var_name(name) {
            problems.push(Problem {
                token: token.to_owned(),
                message: format!("invalid environment variable name '{name}' in '{token}'"),
                help: Some(
                    "names are letters, digits and '_', not starting with a digit; write '$${' for a literal '${'"
                        .to_owned(),
                ),
            });
            continue;
        }
        match (
            env(name).filter(|v| !(v.is_empty() && default.is_some())),
            default,
        ) {
            (Some(v), _) => {
                out.push_str(&v);
                used.push(name.to_owned());
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => problems.push(Problem {
                token: token.to_owned(),
                message: format!("environment variable '{name}' is not set"),
                help: Some(format!(
                    "export {name}=..., or give a default: '${{{name}:-value}}'"
                )),
            }),
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok((out, used))
    } else {
        Err(problems)
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Describe a substituted value without revealing it.
pub(crate) fn redacted(vars: &[String]) -> String {
    let names: Vec<String> = vars.iter().map(|v| format!("${{{v}}}")).collect();
    format!("the value from {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_X" => Some("alice".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_and_escapes() {
        assert_eq!(expand("${USER_X}@h", &env).unwrap().0, "alice@h");
        assert_eq!(expand("${NOPE:-bob}", &env).unwrap().0, "bob");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap().0, "d");
        assert_eq!(expand("$${USER_X} $5", &env).unwrap().0, "${USER_X} $5");
        assert_eq!(
            expand("${USER_X}", &env).unwrap().1,
            vec!["USER_X".to_string()]
        );
    }

    #[test]
    fn reports_every_unset_variable() {
        let errs = expand("${A}-${USER_X}-${B}", &env).unwrap_err();
        let names: Vec<_> = errs.iter().map(|p| p.token.as_str()).collect();
        assert_eq!(names, ["${A}", "${B}"]);
        assert!(
            expand("${1X}", &env).unwrap_err()[0]
                .message
                .contains("invalid")
        );
        assert!(
            expand("x ${A", &env).unwrap_err()[0]
                .message
                .contains("unterminated")
        );
    }
}
