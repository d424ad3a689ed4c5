//! The docs and the code agree: every metric family, config key and command-line flag the
//! code has is documented, everything the docs name exists in the code, and every
//! relative link in README.md and docs/*.md points at a file (and heading) that exists.
//! Each failure names the item and the file to fix.

mod accepted;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use tierwise::config::{load_from_str, ConfigError};
use tierwise::metrics::EXPORTED;

use accepted::accepted_keys;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

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
