//! The inventory as a YAML tree in which every value remembers where it was
//! written.
//!
//! Why not deserialize straight into the typed structs? Serde stops at the
//! first error, and typed deserialization loses both the positions of keys and
//! the raw text of scalars (`kubernetesVersion: 1.30` would become the float
//! `1.3`). So the file is first read with the event parser of serde-saphyr
//! (`serde_saphyr::granit_parser`) into this tree; the schema walk then reports
//! every problem with its position and builds the typed inventory.
//!
//! Aliases are expanded and `<<` merge keys are applied here, so the schema
//! sees plain data; duplicate keys are rejected here too.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use crate::diagnostic::Sink;

/// A position in the source file. `line` and `col` are 1-based (`col` in
/// characters); `byte`/`len` delimit the value's text in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
    pub byte: usize,
    pub len: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Self {
        let range = span.byte_range();
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
            byte: range.as_ref().map_or(0, |r| r.start),
            len: range.map_or(0, |r| r.len()),
        }
    }

    /// The position `offset` bytes into this value's text (for problems inside
    /// a scalar, such as one `${VAR}` among others). Valid for text on one line.
    pub(crate) fn at_offset(self, source: &str, offset: usize, len: usize) -> Pos {
        let start = self.byte + offset;
        let before = source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = source
            .get(line_start..start)
            .map_or(1, |s| s.chars().count() + 1);
        Pos {
            line,
            col,
            byte: start,
            len,
        }
    }
}

/// How a scalar was written; plain scalars are the only ones YAML types
/// implicitly (`true`, `22`, `null`), quoted ones are always strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub value: String,
    pub style: Style,
    /// The environment variables substituted into `value`, if any. Their
    /// values may be secrets: messages must then not echo `value`.
    pub env: Vec<String>,
    /// Substitution failed (already reported): readers skip this value
    /// silently instead of adding a second, confusing error.
    pub poisoned: bool,
}

impl Scalar {
    /// YAML 1.2 core schema null: `~`, `null`, or nothing at all.
    pub(crate) fn is_null(&self) -> bool {
        self.style == Style::Plain
            && self.env.is_empty()
            && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Spanned,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(Scalar),
    Seq(Vec<Spanned>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub pos: Pos,
    pub kind: Kind,
}

impl Spanned {
    /// Words for "found ..." in type errors.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(s) if s.is_null() => "nothing (null)",
            Kind::Scalar(_) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.is_null())
    }
}

/// Parse the sink's source into a tree. `None`: no document, or a problem
/// that stops parsing (already reported).
/// A YAML syntax error is reported once (the parser cannot go on past it);
/// structural problems (duplicate keys, non-scalar keys, several documents)
/// are reported and parsing continues.
pub(crate) fn parse(sink: &mut Sink<'_>) -> Option<Spanned> {
    let source = sink.source();
    let mut b = Builder {
        events: Parser::new_from_str(source),
        anchors: HashMap::new(),
        values: 0,
        sink,
    };
    match b.stream() {
        Ok(yaml) => yaml,
        Err(Stop::Syntax(e)) => {
            let m = e.marker();
            let byte = m.byte_offset().unwrap_or(0);
            let pos = Pos {
                line: m.line(),
                col: m.col() + 1,
                byte,
                len: 1,
            };
            let message = format!("invalid YAML: {}", e.info());
            let line = source.lines().nth(m.line().saturating_sub(1)).unwrap_or("");
            let help = if e.info().contains("tab") {
                "indent with spaces: YAML does not allow tabs for indentation"
            } else if line.contains("${") && line.replace("${", "").contains(['{', '[']) {
                "inside { } or [ ], quote values that use ${VAR}: port: '${SSH_PORT}'"
            } else {
                "check the indentation and quoting around this point; values containing ': ' or starting with '{', '[', '*', '&' or '!' need quotes"
            };
            b.sink.error(pos, message).help(help);
            None
        }
        Err(Stop::Done) => None,
    }
}

/// Why tree building stopped early.
enum Stop {
    /// Invalid YAML; reported by [`parse`].
    Syntax(ScanError),
    /// Already reported, or the event stream ended.
    Done,
}

struct Builder<'s, 'k> {
    events: Parser<'s, serde_saphyr::granit_parser::StrInput<'s>>,
    anchors: HashMap<usize, Spanned>,
    /// Values built so far, counting each alias expansion in full.
    values: usize,
    sink: &'k mut Sink<'s>,
}

/// A bound on alias expansion (the "billion laughs" problem): far above any
/// real inventory, far below what would exhaust memory.
const MAX_VALUES: usize = 1_000_000;

fn size(yaml: &Spanned) -> usize {
    match &yaml.kind {
        Kind::Scalar(_) => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + size(&e.value)).sum::<usize>(),
    }
}

impl<'s> Builder<'s, '_> {
    fn next(&mut self) -> Result<(Event<'s>, Span), Stop> {
        loop {
            match self.events.next() {
                None => return Err(Stop::Done),
                Some(Err(e)) => return Err(Stop::Syntax(e)),
                Some(Ok((Event::Comment(..), _))) => continue,
                Some(Ok(ev)) => return Ok(ev),
            }
        }
    }

    fn stream(&mut self) -> Result<Option<Spanned>, Stop> {
        let mut first: Option<Spanned> = None;
        loop {
            let (event, _) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::StreamEnd => return Ok(first),
                Event::DocumentStart(..) => {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::DocumentEnd) {
                        continue;
                    }
                    let yaml = self.yaml(event, span)?;
                    if first.is_none() {
                        first = Some(yaml);
                    } else {
                        self.sink
                            .error(yaml.pos, "a second YAML document; an inventory is one document")
                            .help("remove the '---' separator and merge the documents, or use one file per cluster");
                    }
                }
                _ => {}
            }
        }
    }

    fn yaml(&mut self, event: Event<'s>, span: Span) -> Result<Spanned, Stop> {
        let pos = Pos::from_span(&span);
        self.values += 1;
        let (yaml, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let style = match style {
                    ScalarStyle::Plain if !forced_str => Style::Plain,
                    ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        Style::Quoted
                    }
                    _ => Style::Block,
                };
                let yaml = Spanned {
                    pos,
                    kind: Kind::Scalar(Scalar {
                        value: value.into_owned(),
                        style,
                        env: Vec::new(),
                        poisoned: false,
                    }),
                };
                (yaml, anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.yaml(event, span)?);
                }
                (
                    Spanned {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(_, anchor, _) => (self.mapping(pos)?, anchor),
            Event::Alias(id) => {
                let yaml = match self.anchors.get(&id) {
                    Some(target) => {
                        self.values += size(target);
                        if self.values > MAX_VALUES {
                            self.sink
                                .error(pos, format!("aliases expand this document to more than {MAX_VALUES} values"))
                                .help("an inventory this large is almost certainly an alias bomb");
                            return Err(Stop::Done);
                        }
                        Spanned {
                            pos,
                            kind: target.kind.clone(),
                        }
                    }
                    None => {
                        self.sink.error(pos, "alias to an unknown anchor");
                        Spanned {
                            pos,
                            kind: Kind::Scalar(null()),
                        }
                    }
                };
                (yaml, 0)
            }
            _ => (
                Spanned {
                    pos,
                    kind: Kind::Scalar(null()),
                },
                0,
            ),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, yaml.clone());
        }
        Ok(yaml)
    }

    fn mapping(&mut self, pos: Pos) -> Result<Spanned, Stop> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merged: Vec<Spanned> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let key = self.yaml(event, span)?;
            let (event, span) = self.next()?;
            let value = self.yaml(event, span)?;
            let key_text = match &key.kind {
                Kind::Scalar(s) => s.value.clone(),
                _ => {
                    self.sink.error(
                        key.pos,
                        format!(
                            "a mapping key must be a plain word, found {}",
                            key.describe()
                        ),
                    );
                    continue;
                }
            };
            if key_text == "<<" && matches!(&key.kind, Kind::Scalar(s) if s.style == Style::Plain) {
                match value.kind {
                    Kind::Seq(items) => merged.extend(items),
                    _ => merged.push(value),
                }
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key_text) {
                let line = first.key_pos.line;
                self.sink
                    .error(key.pos, format!("duplicate key '{key_text}'"))
                    .help(format!(
                        "'{key_text}' is already set on line {line}; keep only one"
                    ));
                continue;
            }
            entries.push(Entry {
                key: key_text,
                key_pos: key.pos,
                value,
            });
        }
        // Merge keys (`<<: *defaults`): explicit keys win, then earlier merges.
        for source in merged {
            match source.kind {
                Kind::Map(more) => {
                    for e in more {
                        if !entries.iter().any(|x| x.key == e.key) {
                            entries.push(e);
                        }
                    }
                }
                _ => {
                    self.sink.error(
                        source.pos,
                        format!("'<<' merges a mapping, found {}", source.describe()),
                    );
                }
            }
        }
        Ok(Spanned {
            pos,
            kind: Kind::Map(entries),
        })
    }
}

fn null() -> Scalar {
    Scalar {
        value: String::new(),
        style: Style::Plain,
        env: Vec::new(),
        poisoned: false,
    }
}
