//! Raw → validated config. Collects every problem, each with its path and a hint,
//! so an operator fixes a file in one pass.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::raw::RawConfig;
use super::{
    validate_access, validate_detect, validate_server, validate_state, validate_tracing, validate_upstream,
    validate_verify, VerifyConfig,
};
use super::{Config, ConfigSource, ModelConfig, TaskConfig};
use crate::policy::{ContentClass, Tier};

pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:4141";
pub(super) const DEFAULT_BODY_LIMIT: u64 = 16 * 1024 * 1024;
pub(super) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 600_000;
pub(super) const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;

/// One thing wrong with a config, located by its path (`tasks.chat.chain[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into(), hint: None });
    }

    pub(super) fn hint(&mut self, path: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into(), hint: Some(hint.into()) });
    }
}

/// Validates a raw config. `env` looks up environment variables (API keys), so tests
/// need not touch the process environment.
pub fn validate(
    raw: &RawConfig,
    source: ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::default();
    let server = validate_server::validate_server(&raw.server, &mut problems);

    let mut upstreams = BTreeMap::new();
    for (name, raw_up) in &raw.upstreams {
        check_name(&format!("upstreams.{name}"), name, &mut problems);
        if let Some(up) = validate_upstream::upstream(name, raw_up, env, &mut problems) {
            upstreams.insert(name.clone(), up);
        }
    }

    let known_upstreams = join_names(raw.upstreams.keys());
    let mut models = BTreeMap::new();
    for (alias, raw_model) in &raw.models {
        let path = format!("models.{alias}");
        check_name(&path, alias, &mut problems);
        match raw_model.upstream.as_deref() {
            None => problems.hint(
                format!("{path}.upstream"),
                "missing",
                format!("name the upstream that serves this model; known upstreams: {known_upstreams}"),
            ),
            Some(up) if !raw.upstreams.contains_key(up) => problems.hint(
                format!("{path}.upstream"),
                format!("unknown upstream \"{up}\""),
                format!("known upstreams: {known_upstreams}"),
            ),
            Some(up) => {
                let name = raw_model.name.clone().unwrap_or_else(|| alias.clone());
                if name.is_empty() {
                    problems.add(format!("{path}.name"), "must not be empty");
                }
                let price = raw_model.price.as_ref().map(|p| super::Price {
                    input_usd_per_mtok: p.input_usd_per_mtok,
                    output_usd_per_mtok: p.output_usd_per_mtok,
                });
                if price.is_some_and(|p| !(p.input_usd_per_mtok >= 0.0 && p.output_usd_per_mtok >= 0.0)) {
                    problems.add(format!("{path}.price"), "prices must be zero or positive numbers");
                }
                let serves = serves(&path, raw_model.serves.as_deref(), &mut problems);
                if serves.embeddings && raw.upstreams.get(up).and_then(|u| u.kind.as_deref()) == Some("anthropic") {
                    problems.hint(
                        format!("{path}.serves"),
                        "Anthropic's API has no embeddings",
                        "serve embeddings from an OpenAI-compatible upstream",
                    );
                }
                let model = ModelConfig { alias: alias.clone(), upstream: up.to_string(), name, price, serves };
                models.insert(alias.clone(), model);
            }
        }
    }

    let (detector, detect) = validate_detect::detect(&raw.detect, &mut problems);
    let known_models = join_names(raw.models.keys());
    let mut tasks = BTreeMap::new();
    for (name, raw_task) in &raw.tasks {
        let path = format!("tasks.{name}");
        check_name(&path, name, &mut problems);
        if raw.models.contains_key(name) {
            problems.hint(
                path.clone(),
                format!("\"{name}\" is both a task and a model alias"),
                "rename one: a request's `model` must name exactly one of them",
            );
        }
        if raw_task.chain.is_empty() {
            problems.hint(
                format!("{path}.chain"),
                "empty chain",
                format!("list at least one model alias; known models: {known_models}"),
            );
        }
        for (i, alias) in raw_task.chain.iter().enumerate() {
            let step_path = format!("{path}.chain[{i}]");
            if !raw.models.contains_key(alias) {
                problems.hint(step_path, format!("unknown model \"{alias}\""), format!("known models: {known_models}"));
            } else if raw_task.chain[..i].contains(alias) {
                problems.hint(
                    step_path,
                    format!("\"{alias}\" is listed twice"),
                    "a chain tries each model once; remove the repeat",
                );
            }
        }
        let serving: Vec<super::Serves> = raw_task
            .chain
            .iter()
            .filter_map(|alias| raw.models.get(alias))
            .map(|m| serves("", m.serves.as_deref(), &mut Problems::default()))
            .collect();
        if !serving.iter().all(|s| s.chat) && !serving.iter().all(|s| s.embeddings) {
            problems.hint(
                format!("{path}.chain"),
                "mixes chat models and embedding models",
                "a task's models must all serve chat, or all embeddings (models.NAME.serves)",
            );
        }
        let min_tier = match raw_task.min_tier.as_deref() {
            None => Tier::None,
            Some(text) => validate_access::tier(&format!("{path}.min_tier"), text, &mut problems).unwrap_or(Tier::None),
        };
        let content_class = match raw_task.content_class.as_deref() {
            None => ContentClass::Normal,
            Some(text) => text.parse().unwrap_or_else(|()| {
                problems.hint(
                    format!("{path}.content_class"),
                    format!("unknown class \"{text}\""),
                    "normal or sensitive",
                );
                ContentClass::Sensitive
            }),
        };
        let rules_reply = raw_task.rules.as_ref().map(|r| r.reply.clone());
        let verify = match &raw_task.verify {
            None => VerifyConfig::default(),
            Some(raw_verify) => validate_verify::verify(&path, raw_verify, raw, content_class, &mut problems),
        };
        let tiers: Vec<Tier> = raw_task
            .chain
            .iter()
            .filter_map(|alias| raw.models.get(alias)?.upstream.as_deref())
            .filter_map(|up| raw.upstreams.get(up)?.tier.as_deref()?.parse().ok())
            .collect();
        if rules_reply.is_none() && !tiers.is_empty() {
            if content_class == ContentClass::Sensitive && !tiers.contains(&Tier::Local) {
                problems.hint(
                    path.clone(),
                    "content_class is sensitive but the chain has no local model and no rules reply: every request would be refused",
                    "add a local model to the chain, or a rules reply",
                );
            }
            if tiers.iter().all(|t| *t < min_tier) {
                problems.hint(
                    format!("{path}.min_tier"),
                    format!("every model in the chain is below min_tier {min_tier}"),
                    "lower min_tier or add a model of a higher tier",
                );
            }
        }
        tasks.insert(
            name.clone(),
            TaskConfig {
                name: name.clone(),
                chain: raw_task.chain.clone(),
                min_tier,
                content_class,
                rules_reply,
                verify,
                prefer_warm: raw_task.prefer_warm.unwrap_or(false),
                deadline: raw_task
                    .deadline_ms
                    .map(|ms| positive_ms(&format!("{path}.deadline_ms"), Some(ms), ms, &mut problems)),
                detect: validate_detect::task(&path, raw_task.detect.as_ref(), detect, &mut problems),
                cache: super::cache::task_cache(&path, raw_task, raw, &mut problems),
            },
        );
    }

    let mut server = server;
    if let Some(server) = server.as_mut() {
        server.trail_in_body = raw.trail.in_body.unwrap_or(true);
    }
    let profiles = validate_access::profiles(raw, &mut problems);
    let listen_is_loopback = server.as_ref().is_none_or(|s| s.listen.ip().is_loopback());
    let auth = validate_access::auth(raw, &profiles, listen_is_loopback, env, &mut problems);
    let audit = raw.audit.path.as_ref().map(|path| crate::audit::AuditConfig {
        path: path.into(),
        include_content: raw.audit.include_content.unwrap_or(false),
        max_bytes: raw.audit.max_bytes.unwrap_or(100 * 1024 * 1024),
        keep: raw.audit.keep.unwrap_or(5),
        queue: raw.audit.queue.unwrap_or(8192),
    });
    if let Some(audit) = &audit {
        let parent = audit.path.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            problems.hint(
                "audit.path",
                format!("the directory of {} does not exist", audit.path.display()),
                "create it, or point audit.path elsewhere",
            );
        }
    }

    let state = validate_state::state(&raw.state, env, &mut problems);
    let tracing = validate_tracing::tracing(&raw.tracing, env, &mut problems);

    match (problems.0.is_empty(), server) {
        (true, Some(server)) => Ok(Config {
            server,
            upstreams,
            models,
            tasks,
            profiles,
            auth,
            detector,
            detect,
            audit,
            state,
            tracing,
            source,
            file_digest: None,
        }),
        _ => Err(problems.0),
    }
}

/// `models.NAME.serves`: `chat`, `embeddings`, or both.
fn serves(path: &str, raw: Option<&[String]>, problems: &mut Problems) -> super::Serves {
    let Some(names) = raw else { return super::Serves::default() };
    let mut serves = super::Serves { chat: false, embeddings: false };
    for (i, name) in names.iter().enumerate() {
        match name.as_str() {
            "chat" => serves.chat = true,
            "embeddings" => serves.embeddings = true,
            other => problems.hint(format!("{path}.serves[{i}]"), format!("unknown \"{other}\""), "chat or embeddings"),
        }
    }
    if names.is_empty() {
        problems.hint(format!("{path}.serves"), "serves nothing", "list chat, embeddings, or both");
        return super::Serves::default();
    }
    serves
}

/// Names become header values, metric labels and log fields: keep them plain.
pub(super) fn check_name(path: &str, name: &str, problems: &mut Problems) {
    let plain = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b));
    if !plain {
        problems.hint(
            path.to_string(),
            format!("name \"{name}\" has characters tierwise does not accept"),
            "use letters, digits and . _ - : / @ (at most 128)",
        );
    }
}

fn join_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "(none)".to_string()
    } else {
        list.join(", ")
    }
}

pub(super) fn positive_ms(path: &str, value: Option<u64>, default: u64, problems: &mut Problems) -> Duration {
    let ms = value.unwrap_or(default);
    if ms == 0 {
        problems.add(path, "must be greater than 0 ms");
    }
    Duration::from_millis(ms)
}
