//! The docs and the code agree: every metric family, config key and command-line flag the
//! code has is documented, everything the docs name exists in the code, and every
//! relative link in README.md and docs/*.md points at a file (and heading) that exists.
//! Each failure names the item and the file to fix.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use tierwise::config::raw::RawConfig;
use tierwise::config::{load_from_str, ConfigError};
use tierwise::metrics::EXPORTED;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The names the docs write for a map's keys: `upstreams.NAME.tier`, `models.ALIAS.name`.
const PLACEHOLDERS: [(&str, &str); 4] =
    [("upstreams", "NAME"), ("models", "ALIAS"), ("tasks", "NAME"), ("profiles", "NAME")];

#[test]
fn every_metric_family_is_in_the_observability_table_and_back() {
    let problems = metric_problems(&read("docs/observability.md"), &doc_files());
    assert!(problems.is_empty(), "docs and metrics disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_loads() {
    let problems = config_problems(&read("docs/configuration.md"));
    assert!(problems.is_empty(), "docs and config disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn every_command_and_flag_is_documented_and_back() {
    let (mut commands, mut flags) = parse_help(&help(&[]), "tierwise --help");
    for command in commands.keys().filter(|c| *c != "help").cloned().collect::<Vec<_>>() {
        let (_, more) = parse_help(&help(&[&command]), &format!("tierwise {command} --help"));
        for (flag, from) in more {
            flags.entry(flag).or_insert(from);
        }
    }
    let (doc_commands, doc_flags) = documented_cli();
    let mut problems = Vec::new();
    for (command, from) in &commands {
        if !doc_commands.contains(command) {
            problems
                .push(format!("`tierwise {command}` ({from}) is not in docs/configuration.md's Command line section"));
        }
    }
    for (flag, from) in &flags {
        if !doc_flags.contains(flag) {
            problems.push(format!("`{flag}` ({from}) is not in docs/configuration.md's Command line section"));
        }
    }
    commands.extend(flags);
    for item in doc_commands.iter().chain(&doc_flags) {
        if !commands.contains_key(item) {
            problems.push(format!("docs/configuration.md documents `{item}`, which no `tierwise --help` lists"));
        }
    }
    assert!(problems.is_empty(), "docs and the command line disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn every_relative_link_points_at_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    for (file, text) in doc_files() {
        let dir = Path::new(ROOT).join(&file).parent().unwrap().to_path_buf();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').map_or((target.as_str(), None), |(p, a)| (p, Some(a)));
            let resolved = if path.is_empty() { Path::new(ROOT).join(&file) } else { dir.join(path) };
            if !resolved.exists() {
                problems.push(format!("{file} links to `{target}`: {} does not exist", resolved.display()));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| resolved.extension().is_some_and(|e| e == "md")) {
                let headings = heading_slugs(&std::fs::read_to_string(&resolved).unwrap());
                if !headings.contains(anchor) {
                    problems.push(format!("{file} links to `{target}`, but that page has no heading #{anchor}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "broken links:\n  {}", problems.join("\n  "));
}

#[test]
fn every_source_path_the_docs_name_exists_and_every_module_is_in_the_architecture() {
    let mut problems = Vec::new();
    for (file, text) in doc_files() {
        for span in code_spans(&text) {
            let path = span.trim_end_matches('/');
            if (span.starts_with("src/") || span.starts_with("tests/")) && !Path::new(ROOT).join(path).exists() {
                problems.push(format!("{file} names `{span}`, which does not exist"));
            }
        }
    }
    let architecture = read("docs/architecture.md");
    // In the module table, the files a row names are inside the row's directory.
    for cells in table_rows(&architecture) {
        let Some(dir) = first_code_span(&cells[0]).filter(|d| d.starts_with("src/") && d.ends_with('/')) else {
            continue;
        };
        for name in cells.get(1).map(|c| code_spans(c)).unwrap_or_default() {
            if (name.ends_with(".rs") || name.ends_with('/')) && !Path::new(ROOT).join(&dir).join(&name).exists() {
                problems.push(format!("docs/architecture.md lists `{name}` under `{dir}`, which has no such file"));
            }
        }
    }
    for entry in std::fs::read_dir(Path::new(ROOT).join("src")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let module = if entry.path().is_dir() { format!("`src/{name}/`") } else { format!("`src/{name}`") };
        if !architecture.contains(&module) {
            problems.push(format!("{module} is not in docs/architecture.md"));
        }
    }
    assert!(problems.is_empty(), "docs and src/ disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn the_checks_see_a_removed_row() {
    let observability = read("docs/observability.md");
    let without = observability.replace("| `tierwise_shed_total` |", "| shed |");
    assert_ne!(without, observability, "docs/observability.md has a `tierwise_shed_total` row");
    let problems = metric_problems(&without, &[]);
    assert_eq!(problems, ["`tierwise_shed_total` is exported but has no row in docs/observability.md's metrics table"]);

    let configuration = read("docs/configuration.md");
    let without = configuration.replace("| `server.config_poll_ms` |", "| poll |");
    assert_ne!(without, configuration, "docs/configuration.md has a `server.config_poll_ms` row");
    let problems = config_problems(&without);
    assert_eq!(
        problems,
        ["`server.config_poll_ms` is accepted by the loader but not documented in docs/configuration.md"]
    );
}

/// What disagrees between `EXPORTED` and the metrics table of `observability` (the text
/// of docs/observability.md), and which `tierwise_*` names in `files` are not exported.
fn metric_problems(observability: &str, files: &[(String, String)]) -> Vec<String> {
    let rows: BTreeMap<String, Vec<String>> = table_rows(observability)
        .into_iter()
        .filter_map(|cells| Some((first_code_span(&cells[0])?, cells)))
        .filter(|(name, _)| name.starts_with("tierwise_"))
        .collect();
    let mut problems = Vec::new();
    for (name, kind, labels) in EXPORTED {
        let Some(cells) = rows.get(*name) else {
            problems.push(format!("`{name}` is exported but has no row in docs/observability.md's metrics table"));
            continue;
        };
        let documented_kind = cells.get(1).map_or("", |c| c.trim());
        if documented_kind != *kind {
            problems.push(format!("docs/observability.md: `{name}` is a {kind}, the table says `{documented_kind}`"));
        }
        let documented: Vec<String> = cells.get(2).map(|c| code_spans(c)).unwrap_or_default();
        if documented != labels.iter().map(|l| l.to_string()).collect::<Vec<_>>() {
            problems
                .push(format!("docs/observability.md: `{name}` has labels {labels:?}, the table says {documented:?}"));
        }
    }
    for name in rows.keys().filter(|name| !EXPORTED.iter().any(|(exported, _, _)| exported == name)) {
        problems.push(format!("docs/observability.md's metrics table has `{name}`, which is not exported"));
    }
    let exported: BTreeMap<&str, &str> = EXPORTED.iter().map(|(name, kind, _)| (*name, *kind)).collect();
    for (file, text) in files {
        for name in metric_names(text) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|base| exported.get(base) == Some(&"histogram")))
                .unwrap_or(&name);
            if !exported.contains_key(family) {
                problems.push(format!("{file} names `{name}`, which is not in tierwise::metrics::EXPORTED"));
            }
        }
    }
    problems
}

/// What disagrees between the keys `RawConfig` accepts and the key tables of
/// `configuration` (the text of docs/configuration.md), including documented keys the
/// loader refuses as unknown.
fn config_problems(configuration: &str) -> Vec<String> {
    let accepted = accepted_keys();
    let documented = config_keys(configuration);
    let mut problems = Vec::new();
    for key in accepted.difference(&documented) {
        problems.push(format!("`{key}` is accepted by the loader but not documented in docs/configuration.md"));
    }
    for key in documented.difference(&accepted) {
        problems.push(format!("`{key}` is documented in docs/configuration.md but RawConfig has no such key"));
    }
    for key in &documented {
        let toml = toml_setting(key);
        if let Err(ConfigError::Syntax { errors, .. }) = load_from_str(&toml, &|_| None) {
            if let Some(error) = errors.iter().find(|e| e.to_lowercase().contains("unknown field")) {
                problems.push(format!(
                    "`{key}` is documented in docs/configuration.md but the loader rejects `{toml}`: {error}"
                ));
            }
        }
    }
    problems
}

// ── the docs ─────────────────────────────────────────────────────────────────────

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// README.md and every docs/*.md, by path relative to the repository, with their text.
fn doc_files() -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_string()];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages.iter().map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy())));
    files.into_iter().map(|f| (f.clone(), read(&f))).collect()
}

/// The text outside fenced code blocks, line by line.
fn prose(markdown: &str) -> Vec<&str> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The cells of every table row (not the header separator), split on unescaped `|`.
fn table_rows(markdown: &str) -> Vec<Vec<String>> {
    prose(markdown)
        .into_iter()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .map(|line| {
            let mut cells = vec![String::new()];
            let mut chars = line.trim().trim_start_matches('|').chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'|') => cells.last_mut().unwrap().push(chars.next().unwrap()),
                    '|' => cells.push(String::new()),
                    c => cells.last_mut().unwrap().push(c),
                }
            }
            cells.pop();
            cells
        })
        .collect()
}

fn code_spans(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn first_code_span(cell: &str) -> Option<String> {
    cell.trim().starts_with('`').then(|| code_spans(cell).into_iter().next()).flatten()
}

/// `tierwise_…` names anywhere in a page.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("tierwise_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String =
            text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        names.insert(name);
    }
    names
}

/// The keys of docs/configuration.md: the first cell of every table row that is a key path.
fn config_keys(markdown: &str) -> BTreeSet<String> {
    table_rows(markdown)
        .iter()
        .filter_map(|cells| first_code_span(&cells[0]))
        .filter(|key| key.contains('.') && key.chars().all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c)))
        .collect()
}

/// `a.NAME.b[].c` → `a = { x = { b = [{ c = 1 }] } }`: one TOML line that sets just that key.
fn toml_setting(key: &str) -> String {
    fn value(segments: &[&str]) -> String {
        let Some((first, rest)) = segments.split_first() else { return "1".into() };
        let name = first.trim_end_matches("[]");
        let name = if name.chars().all(|c| c.is_ascii_uppercase()) { "x" } else { name };
        let inner = if first.ends_with("[]") { format!("[{}]", value(rest)) } else { value(rest) };
        format!("{{ {name} = {inner} }}")
    }
    let segments: Vec<&str> = key.split('.').collect();
    let inline = value(&segments);
    // The outer `{ ` and ` }` would make an inline table of the whole file: drop them.
    inline[2..inline.len() - 2].to_string()
}

/// Tokens of the "## Command line" section: subcommands (`tierwise NAME`) and `--flags`.
fn documented_cli() -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = read("docs/configuration.md");
    let start = doc.find("\n## Command line\n").expect("docs/configuration.md has a `## Command line` section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let (mut commands, mut flags) = (BTreeSet::new(), BTreeSet::new());
    for span in code_spans(section) {
        let mut words = span.split_whitespace();
        match words.next() {
            Some("tierwise") => {
                if let Some(command) = words.next().filter(|w| !w.starts_with('-') && !w.starts_with('[')) {
                    commands.insert(command.to_string());
                }
            }
            Some(word) if word.starts_with("--") => {
                flags.insert(word.trim_end_matches(',').to_string());
            }
            _ => {}
        }
    }
    (commands, flags)
}

// ── the command line ─────────────────────────────────────────────────────────────

fn help(command: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tierwise")).args(command).arg("--help").output().unwrap();
    assert!(output.status.success(), "tierwise {} --help failed: {output:?}", command.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

/// Subcommands and long flags of one `--help` text, each with where it was seen.
fn parse_help(text: &str, from: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut commands, mut flags) = (BTreeMap::new(), BTreeMap::new());
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Commands" => {
                commands.insert(words[0].to_string(), from.to_string());
            }
            "Options" => {
                for word in words.iter().take_while(|w| w.starts_with('-') || w.starts_with('<')) {
                    if word.starts_with("--") {
                        flags.insert(word.trim_end_matches(',').to_string(), from.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    (commands, flags)
}

// ── links ────────────────────────────────────────────────────────────────────────

/// The targets of `[text](target)` links outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to
/// `-`, `-1`, `-2`... for repeats.
fn heading_slugs(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut slugs = BTreeSet::new();
    for line in prose(markdown).into_iter().filter(|l| l.starts_with('#')) {
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        slugs.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    slugs
}

// ── what the loader accepts ──────────────────────────────────────────────────────

/// Every key path `RawConfig` accepts, with the docs' placeholders for map keys, found by
/// deserializing it from a [`Tracer`] that records where each value is read (the
/// serde-reflection trick: a derived `Deserialize` names its fields to `deserialize_struct`).
fn accepted_keys() -> BTreeSet<String> {
    let paths = RefCell::new(BTreeSet::new());
    RawConfig::deserialize(Tracer { path: String::new(), paths: &paths }).expect("RawConfig can be traced");
    paths.into_inner()
}

/// A deserializer that offers every field of every struct once, one entry for each map
/// (key `*`) and one element for each sequence (`[]`), and records each leaf's path.
struct Tracer<'a> {
    path: String,
    paths: &'a RefCell<BTreeSet<String>>,
}

impl<'a> Tracer<'a> {
    fn child(&self, segment: &str) -> Tracer<'a> {
        let path = match (self.path.is_empty(), segment) {
            (_, "[]") => format!("{}[]", self.path),
            (true, _) => segment.to_string(),
            (false, _) => format!("{}.{segment}", self.path),
        };
        Tracer { path, paths: self.paths }
    }

    /// Records a leaf. A map or list of plain values is one key (`upstreams.NAME.headers`,
    /// `detect.builtin`); a map of tables gets its placeholder (`upstreams.NAME.tier`).
    fn leaf(&self) {
        let mut path = self.path.as_str();
        while let Some(shorter) = path.strip_suffix(".*").or_else(|| path.strip_suffix("[]")) {
            path = shorter;
        }
        let segments: Vec<&str> = path.split('.').collect();
        let named: Vec<&str> = segments
            .iter()
            .enumerate()
            .map(|(i, segment)| match *segment {
                "*" => PLACEHOLDERS
                    .iter()
                    .find(|(map, _)| i > 0 && segments[i - 1] == *map)
                    .map(|(_, name)| *name)
                    .unwrap_or_else(|| {
                        panic!("`{path}`: a new map of tables; add its placeholder to PLACEHOLDERS in tests/it/docs.rs")
                    }),
                other => other,
            })
            .collect();
        self.paths.borrow_mut().insert(named.join("."));
    }
}

type Error = de::value::Error;

macro_rules! leaf {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.$visit($value)
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    leaf! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_u64(0), deserialize_i16 => visit_u64(0), deserialize_i32 => visit_u64(0),
        deserialize_i64 => visit_u64(0), deserialize_u8 => visit_u64(0), deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0), deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0), deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'), deserialize_str => visit_str("x"), deserialize_string => visit_str("x"),
        deserialize_bytes => visit_bytes(b"x"), deserialize_byte_buf => visit_bytes(b"x"),
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_unit()
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "`{}` is self-describing (deserialize_any); teach the tracer its shape",
            self.path
        )))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!("`{}`: an identifier outside a map key", self.path)))
    }
    fn deserialize_enum<V: Visitor<'de>>(self, _: &str, _: &[&str], _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!("`{}` is an enum; teach the tracer its variants", self.path)))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(One(Some(self.child("[]"))))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &str, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Entries { entries: vec![("*", self.child("*"))].into_iter(), value: None })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let entries: Vec<_> = fields.iter().map(|field| (*field, self.child(field))).collect();
        visitor.visit_map(Entries { entries: entries.into_iter(), value: None })
    }
}

/// A map whose keys are given and whose values are traced.
struct Entries<'a> {
    entries: std::vec::IntoIter<(&'static str, Tracer<'a>)>,
    value: Option<Tracer<'a>>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(IntoDeserializer::<Error>::into_deserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.value.take().expect("a key comes before its value"))
    }
}

/// A sequence of one traced element.
struct One<'a>(Option<Tracer<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|tracer| seed.deserialize(tracer)).transpose()
    }
}
