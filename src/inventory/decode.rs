//! Reading the position-annotated tree into typed values while collecting
//! every problem.
//!
//! Each schema section is one function that asks a [`MapReader`] for its keys
//! (`m.get("port")`, `m.required("name")`). The keys asked for *are* the
//! schema: [`MapReader::finish`] reports every other key as unknown, with a
//! did-you-mean among the keys that were asked for. Adding a key to a section
//! is therefore one line, and the unknown-key check cannot drift from it.
//!
//! Readers return `Option`: `None` means "absent or already reported", so a
//! bad value never hides the problems that come after it.

use std::str::FromStr;

use crate::diagnostic::Sink;
use crate::env;
use crate::yaml::{Entry, Kind, Pos, Scalar, Spanned, Style};

/// Decoding context: the diagnostic sink plus helpers shared by all sections.
pub(crate) struct Cx<'s> {
    pub sink: Sink<'s>,
    /// Every mapping read so far and the keys it accepts, to tell a user
    /// who put a key in the wrong section where it belongs.
    sections: Vec<(String, Vec<&'static str>)>,
    unknown: Vec<UnknownKey>,
}

struct UnknownKey {
    key: String,
    pos: Pos,
    what: String,
    asked: Vec<&'static str>,
}

impl<'s> Cx<'s> {
    pub(crate) fn new(sink: Sink<'s>) -> Self {
        Cx {
            sink,
            sections: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// Report the unknown keys collected by [`MapReader::finish`]. Done at
    /// the end so that a key in the wrong section can be pointed to the
    /// section that accepts it (`user` under a host belongs under `ssh`).
    pub(crate) fn report_unknown_keys(&mut self) {
        for u in std::mem::take(&mut self.unknown) {
            // A key spelt exactly as another section's is most likely in the
            // wrong place (`extraSANs` under `cluster` is not `extraArgs`).
            let help = if let Some(home) = self.home_of(&u.key, &u.what) {
                format!("'{}' belongs under {home}", u.key)
            } else if let Some(g) = suggest(&u.key, u.asked.iter().copied()) {
                format!("did you mean '{g}'?")
            } else {
                format!("valid keys here: {}", u.asked.join(", "))
            };
            self.sink
                .error(u.pos, format!("unknown key '{}' in {}", u.key, u.what))
                .help(help);
        }
    }

    /// Where `key` is accepted, other than in `what`; a section of the same
    /// host first (`'ssh' of host 'a'` for host 'a').
    fn home_of(&self, key: &str, what: &str) -> Option<String> {
        let mut homes = self
            .sections
            .iter()
            .filter(|(w, keys)| w != what && keys.contains(&key));
        let (w, _) = homes
            .clone()
            .find(|(w, _)| w.contains(what))
            .or_else(|| homes.next())?;
        Some(if w.starts_with("host ") || w.starts_with("hosts[") {
            "each entry of 'hosts'".to_owned()
        } else if w == "the inventory" {
            "the top level of the file".to_owned()
        } else {
            // "'ssh' of host 'a'" -> "'ssh'": the key to write it under.
            w.split(" of ").next().unwrap_or(w).to_owned()
        })
    }

    /// `'text'` for a scalar as written, or a redacted description when the
    /// value came from the environment (it may be a secret).
    pub(crate) fn shown(&self, yaml: &Spanned) -> String {
        match &yaml.kind {
            Kind::Scalar(s) if !s.env.is_empty() => env::redacted(&s.env),
            Kind::Scalar(s) => format!("'{}'", s.value),
            _ => yaml.describe().to_owned(),
        }
    }

    fn type_error(&mut self, yaml: &Spanned, expected: &str, what: &str) {
        let found = yaml.describe();
        self.sink.error(
            yaml.pos,
            format!("{what} must be {expected}, found {found}"),
        );
    }

    /// A non-null scalar, or a type error.
    pub(crate) fn scalar<'n>(
        &mut self,
        yaml: &'n Spanned,
        expected: &str,
        what: &str,
    ) -> Option<&'n Scalar> {
        match &yaml.kind {
            Kind::Scalar(s) if s.poisoned => None,
            Kind::Scalar(s) if !s.is_null() => Some(s),
            _ => {
                self.type_error(yaml, expected, what);
                None
            }
        }
    }

    pub(crate) fn string(&mut self, yaml: &Spanned, what: &str) -> Option<String> {
        self.scalar(yaml, "a string", what).map(|s| s.value.clone())
    }

    /// Strict booleans: YAML 1.1's `yes`/`no`/`on`/`off` are rejected with a
    /// hint, because they silently mean something else in other tools.
    pub(crate) fn boolean(&mut self, yaml: &Spanned, what: &str) -> Option<bool> {
        let s = self.scalar(yaml, "true or false", what)?;
        match s.value.as_str() {
            "true" | "True" | "TRUE" if s.style == Style::Plain || !s.env.is_empty() => Some(true),
            "false" | "False" | "FALSE" if s.style == Style::Plain || !s.env.is_empty() => {
                Some(false)
            }
            other => {
                let shown = self.shown(yaml);
                let d = self.sink.error(
                    yaml.pos,
                    format!("{what} must be true or false, found {shown}"),
                );
                if matches!(
                    other.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "y" | "n"
                ) {
                    d.help("write true or false: YAML 1.1 words such as yes/no/on/off are not booleans here");
                } else if s.style != Style::Plain {
                    d.help("remove the quotes");
                }
                None
            }
        }
    }

    /// An unsigned integer within `min..=max`.
    pub(crate) fn integer<T>(&mut self, yaml: &Spanned, what: &str, min: T, max: T) -> Option<T>
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let s = self.scalar(yaml, "a whole number", what)?;
        let text = s.value.trim().replace('_', "");
        match text.parse::<T>() {
            Ok(v) if v >= min && v <= max => Some(v),
            _ => {
                let shown = self.shown(yaml);
                self.sink.error(
                    yaml.pos,
                    format!("{what} must be a whole number from {min} to {max}, found {shown}"),
                );
                None
            }
        }
    }

    pub(crate) fn port(&mut self, yaml: &Spanned, what: &str) -> Option<u16> {
        self.integer::<u16>(yaml, what, 1, u16::MAX)
    }

    /// A humantime duration (`10s`, `1m 30s`, `500ms`).
    pub(crate) fn duration(&mut self, yaml: &Spanned, what: &str) -> Option<std::time::Duration> {
        let s = self.scalar(yaml, "a duration such as '10s'", what)?;
        match humantime::parse_duration(s.value.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let shown = self.shown(yaml);
                let plain_number = s.value.trim().parse::<u64>().is_ok();
                let d = self.sink.error(
                    yaml.pos,
                    format!("{what} must be a duration, found {shown} ({e})"),
                );
                if plain_number {
                    d.help(format!("add a unit, e.g. '{}s'", s.value.trim()));
                } else {
                    d.help("use a number with a unit: '10s', '1m 30s', '500ms'");
                }
                None
            }
        }
    }

    /// One of a fixed set of words, with a did-you-mean.
    pub(crate) fn one_of<'a>(
        &mut self,
        yaml: &Spanned,
        what: &str,
        choices: &[&'a str],
    ) -> Option<&'a str> {
        let list = choices
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let s = self.scalar(yaml, &format!("one of {list}"), what)?;
        if let Some(c) = choices.iter().find(|c| **c == s.value) {
            return Some(c);
        }
        let shown = self.shown(yaml);
        let guess = if s.env.is_empty() {
            suggest(&s.value, choices.iter().copied())
        } else {
            None
        };
        let d = self.sink.error(
            yaml.pos,
            format!("unknown value {shown} for {what}, expected one of {list}"),
        );
        if let Some(g) = guess {
            d.help(format!("did you mean '{g}'?"));
        }
        None
    }

    /// A list; each item is read by `item`. A single scalar is not a list.
    pub(crate) fn list<T>(
        &mut self,
        yaml: &Spanned,
        what: &str,
        mut item: impl FnMut(&mut Self, &Spanned) -> Option<T>,
    ) -> Option<Vec<T>> {
        match &yaml.kind {
            Kind::Seq(items) => Some(items.iter().filter_map(|n| item(self, n)).collect()),
            _ if yaml.is_null() => Some(Vec::new()),
            _ => {
                let d = self.sink.error(
                    yaml.pos,
                    format!("{what} must be a list, found {}", yaml.describe()),
                );
                d.help("write a YAML list: [a, b] or one '- item' per line");
                None
            }
        }
    }

    /// A list of named entries (`services:`, `commands:`): each read by
    /// `item` with its index, a second entry with a name already used is an
    /// error at that entry. `None` when any entry was bad (already reported).
    pub(crate) fn named_list<T>(
        &mut self,
        yaml: &Spanned,
        what: &str,
        duplicate_help: &str,
        name: impl Fn(&T) -> &str,
        mut item: impl FnMut(&mut Self, &Spanned, usize) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Kind::Seq(items) = &yaml.kind else {
            return self.list(yaml, &format!("'{what}s'"), |_, _| None::<T>);
        };
        let mut out: Vec<T> = Vec::new();
        let mut ok = true;
        for (i, entry) in items.iter().enumerate() {
            match item(self, entry, i) {
                Some(t) if out.iter().any(|o| name(o) == name(&t)) => {
                    self.sink
                        .error(entry.pos, format!("{what} '{}' is listed twice", name(&t)))
                        .help(duplicate_help);
                    ok = false;
                }
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Start reading a mapping. `null` (an empty section) reads as empty.
    pub(crate) fn map<'n>(&mut self, yaml: &'n Spanned, what: &str) -> Option<MapReader<'n>> {
        match &yaml.kind {
            Kind::Map(entries) => Some(MapReader {
                pos: yaml.pos,
                entries,
                asked: Vec::new(),
                extension_prefix: None,
                what: what.to_owned(),
            }),
            _ if yaml.is_null() => Some(MapReader {
                pos: yaml.pos,
                entries: &[],
                asked: Vec::new(),
                extension_prefix: None,
                what: what.to_owned(),
            }),
            _ => {
                self.type_error(yaml, "a mapping of 'key: value' lines", what);
                None
            }
        }
    }
}

/// Reads one mapping key by key; see the module docs.
pub(crate) struct MapReader<'n> {
    pub pos: Pos,
    entries: &'n [Entry],
    asked: Vec<&'static str>,
    extension_prefix: Option<&'static str>,
    what: String,
}

impl<'n> MapReader<'n> {
    /// The value under `key`, unless absent or null.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'n Spanned> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
            .filter(|v| !v.is_null())
    }

    /// Like [`Self::get`], but a missing key is an error at the mapping.
    pub(crate) fn required(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<&'n Spanned> {
        let found = self.get(key);
        // A misspelt key (`adress`) is reported as unknown, with a
        // did-you-mean; "missing 'address'" would say the same thing twice.
        let misspelt = || {
            self.entries
                .iter()
                .any(|e| e.key != key && suggest(&e.key, std::iter::once(key)) == Some(key))
        };
        if found.is_none() && !misspelt() {
            let present = self.entries.iter().find(|e| e.key == key);
            let pos = present.map_or(self.pos, |e| e.key_pos);
            let what = &self.what;
            let msg = match present {
                Some(_) => format!("'{key}' in {what} has no value"),
                None => format!("missing required key '{key}' in {what}"),
            };
            cx.sink.error(pos, msg);
        }
        found
    }

    /// Accept, unread, every key starting with `prefix`. Used for `x-` keys
    /// at the top level: a home for YAML anchors (`x-defaults: &d {...}`).
    pub(crate) fn allow_prefix(&mut self, prefix: &'static str) {
        self.extension_prefix = Some(prefix);
    }

    /// Record every key that no reader asked for; they are reported by
    /// [`Cx::report_unknown_keys`].
    pub(crate) fn finish(self, cx: &mut Cx<'_>) {
        for e in self.entries {
            if self.asked.contains(&e.key.as_str())
                || self.extension_prefix.is_some_and(|p| e.key.starts_with(p))
            {
                continue;
            }
            cx.unknown.push(UnknownKey {
                key: e.key.clone(),
                pos: e.key_pos,
                what: self.what.clone(),
                asked: self.asked.clone(),
            });
        }
        cx.sections.push((self.what, self.asked));
    }
}

/// The closest candidate to a misspelt word, if one is close enough: same
/// word ignoring case and '-'/'_' (`pod_cidr` → `podCIDR`), else a small edit
/// distance relative to the word's length.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_lowercase()
    };
    let w = norm(word);
    if let Some(c) = candidates.clone().find(|c| norm(c) == w) {
        return Some(c);
    }
    let limit = match w.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    candidates
        .map(|c| (strsim::damerau_levenshtein(&w, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions() {
        let keys = ["name", "address", "role", "groups", "ssh", "vars"];
        assert_eq!(suggest("adress", keys.iter().copied()), Some("address"));
        assert_eq!(suggest("Role", keys.iter().copied()), Some("role"));
        assert_eq!(suggest("group", keys.iter().copied()), Some("groups"));
        assert_eq!(suggest("kubelet", keys.iter().copied()), None);
        assert_eq!(
            suggest("pod_cidr", ["podCIDR", "serviceCIDR"].into_iter()),
            Some("podCIDR")
        );
    }
}
