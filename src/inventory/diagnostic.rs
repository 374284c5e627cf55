//! Diagnostics: what is wrong, where (file, line, column), and how to fix it.
//!
//! Validation never stops at the first problem: every check pushes into a
//! [`Sink`], and the caller gets all of them at once. That is what makes
//! `k8sup inventory check` useful in CI, where a round trip per typo is slow.
//! Rendering follows the compiler convention (`file:line:col: error: ...`, the
//! source line, a caret, `= help: ...`) so editors and CI log viewers link it.

use std::fmt;

use serde::Serialize;

use crate::yaml::Pos;

/// How bad a diagnostic is. Warnings are printed but do not fail `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in an inventory file.
///
/// `line` and `column` are 1-based (column counts characters, like editors);
/// both are 0 when the problem has no position (for example, the file could
/// not be read). Positions always refer to the file as written, before any
/// `${ENV}` substitution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source line the diagnostic points into, for the caret display.
    #[serde(skip)]
    pub source_line: Option<String>,
    /// How many characters to underline from `column` (at least 1).
    #[serde(skip)]
    pub width: usize,
}

impl Diagnostic {
    /// A diagnostic about the file as a whole (no position).
    pub fn whole_file(severity: Severity, file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            help: None,
            source_line: None,
            width: 0,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Renders like rustc:
    ///
    /// ```text
    /// inventory.yaml:12:5: error: unknown key 'adress' in host 'cp-1'
    ///    |
    /// 12 |     adress: 10.0.0.11
    ///    |     ^^^^^^
    ///    = help: did you mean 'address'?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.severity, self.message
            )?;
        }
        let gutter = " ".repeat(self.line.to_string().len());
        if let (Some(src), true) = (&self.source_line, self.line > 0) {
            let src = src.replace('\t', " ");
            let pad = " ".repeat(self.column.saturating_sub(1));
            let carets = "^".repeat(self.width.max(1));
            write!(
                f,
                "\n{gutter} |\n{} | {src}\n{gutter} | {pad}{carets}",
                self.line
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n{gutter} = help: {help}")?;
        }
        Ok(())
    }
}

/// The error returned when an inventory cannot be used: every diagnostic
/// found (errors and warnings, errors first in file order).
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.error_count();
        write!(
            f,
            "invalid inventory {} ({n} error{})",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            write!(f, "\n\n{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// Collects diagnostics for one source file while it is parsed and checked.
pub(crate) struct Sink<'s> {
    file: String,
    source: &'s str,
    items: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(file: &str, source: &'s str) -> Self {
        Sink {
            file: file.to_owned(),
            source,
            items: Vec::new(),
        }
    }

    pub(crate) fn source(&self) -> &'s str {
        self.source
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, pos, message.into())
    }

    pub(crate) fn warning(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, pos, message.into())
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    fn push(&mut self, severity: Severity, pos: Pos, message: String) -> &mut Diagnostic {
        let (source_line, width) = if pos.line == 0 {
            (None, 0)
        } else {
            let line = self.source.lines().nth(pos.line - 1).unwrap_or("");
            let rest: String = line.chars().skip(pos.col.saturating_sub(1)).collect();
            let spanned = self
                .source
                .get(pos.byte..pos.byte + pos.len)
                .map(|s| s.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1);
            (
                Some(line.trim_end_matches('\r').to_owned()),
                spanned.clamp(1, rest.chars().count().max(1)),
            )
        };
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line: pos.line,
            column: pos.col,
            message,
            help: None,
            source_line,
            width,
        });
        self.items.last_mut().expect("just pushed")
    }

    /// Errors first, then warnings; each group in file order. A value
    /// reused through a YAML alias can produce the same diagnostic more than
    /// once; it is shown once.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.severity, d.line, d.column));
        let mut seen = std::collections::HashSet::new();
        self.items
            .retain(|d| seen.insert((d.severity, d.line, d.column, d.message.clone())));
        self.items
    }
}

impl Diagnostic {
    /// Attach a `help:` line (builder style, used right after `Sink::error`).
    pub(crate) fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}
