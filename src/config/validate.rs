//! Raw → validated config. Collects every problem, each with its path and a hint,
//! so an operator fixes a file in one pass.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use super::raw::{RawConfig, RawUpstream};
use super::{validate_access, validate_detect, validate_server, validate_verify, VerifyConfig};
use super::{
    Config, ConfigSource, KeyHeader, ModelConfig, Secret, TaskConfig, UpstreamConfig, UpstreamKind, WarmthSource,
};
use crate::policy::{ContentClass, Tier};

pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:4141";
pub(super) const DEFAULT_BODY_LIMIT: u64 = 16 * 1024 * 1024;
pub(super) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 600_000;
pub(super) const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 600_000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 120_000;
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Headers tierwise writes itself, which `headers` and `auth_header` may not set.
const RESERVED_HEADERS: [&str; 6] = ["content-type", "content-length", "host", "transfer-encoding", "connection", "te"];
const DEFAULT_REFRESH_MS: u64 = 2_000;
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 200;

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
        if let Some(up) = validate_upstream(name, raw_up, env, &mut problems) {
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
                models
                    .insert(alias.clone(), ModelConfig { alias: alias.clone(), upstream: up.to_string(), name, price });
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
            source,
            file_digest: None,
        }),
        _ => Err(problems.0),
    }
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

fn validate_upstream(
    name: &str,
    raw: &RawUpstream,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<UpstreamConfig> {
    let path = format!("upstreams.{name}");
    let tier = match raw.tier.as_deref() {
        None => {
            problems.hint(
                format!("{path}.tier"),
                "missing",
                "every upstream declares its tier: local, server or cloud",
            );
            None
        }
        Some(text) => match text.parse::<Tier>() {
            Ok(Tier::None) | Err(_) => {
                problems.hint(
                    format!("{path}.tier"),
                    format!("unknown tier \"{text}\""),
                    "one of: local (this machine), server (your network), cloud (a third party)",
                );
                None
            }
            Ok(tier) => Some(tier),
        },
    };
    let kind = match raw.kind.as_deref().unwrap_or("openai") {
        "openai" => Some(UpstreamKind::OpenAi),
        "anthropic" => Some(UpstreamKind::Anthropic),
        other => {
            problems.hint(format!("{path}.kind"), format!("unknown kind \"{other}\""), "supported: openai, anthropic");
            None
        }
    };
    let base_url = match (raw.base_url.as_deref(), kind) {
        (None, Some(UpstreamKind::Anthropic)) => Url::parse(ANTHROPIC_BASE_URL).ok(),
        (None, _) => {
            problems.hint(format!("{path}.base_url"), "missing", "e.g. \"http://127.0.0.1:8080/v1\"");
            None
        }
        (Some(text), _) => match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(_) => {
                problems.hint(
                    format!("{path}.base_url"),
                    format!("\"{text}\" is not an http(s) URL"),
                    "e.g. \"https://api.openai.com/v1\"",
                );
                None
            }
            Err(err) => {
                problems.hint(
                    format!("{path}.base_url"),
                    format!("\"{text}\" is not a URL: {err}"),
                    "e.g. \"http://127.0.0.1:8080/v1\"",
                );
                None
            }
        },
    };
    let api_key_env = raw.api_key_env.clone();
    if let Some(var) = &api_key_env {
        let valid = !var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            problems.hint(
                format!("{path}.api_key_env"),
                format!("\"{var}\" is not an environment variable name"),
                "name the variable, not the key: e.g. \"OPENAI_API_KEY\"",
            );
        }
    }
    let api_key = api_key_env.as_deref().and_then(env).filter(|k| !k.is_empty()).map(Secret::new);

    let key_header = validate_key_header(&path, raw, kind, problems);
    let headers = validate_headers(&path, raw, kind, key_header.as_ref(), problems);
    let query = validate_query(&path, raw, problems);
    let (anthropic_version, max_tokens_default) = validate_anthropic(&path, raw, kind, problems);

    let timeout = positive_ms(&format!("{path}.timeout_ms"), raw.timeout_ms, DEFAULT_UPSTREAM_TIMEOUT_MS, problems);
    let connect_timeout = positive_ms(
        &format!("{path}.connect_timeout_ms"),
        raw.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
        problems,
    );
    let first_byte_timeout = positive_ms(
        &format!("{path}.first_byte_timeout_ms"),
        raw.first_byte_timeout_ms,
        DEFAULT_FIRST_BYTE_TIMEOUT_MS,
        problems,
    );

    let warmth = match raw.warmth.as_deref() {
        None => Some(WarmthSource::None),
        Some(text) => text.parse::<WarmthSource>().ok().or_else(|| {
            problems.hint(
                format!("{path}.warmth"),
                format!("unknown warmth source \"{text}\""),
                "one of: llama-swap, llama-server, ollama, always (cloud), none",
            );
            None
        }),
    };
    let refresh = positive_ms(&format!("{path}.refresh_ms"), raw.refresh_ms, DEFAULT_REFRESH_MS, problems);
    // Unset, the probe timeout shrinks to fit a short refresh period.
    let default_probe_timeout =
        DEFAULT_PROBE_TIMEOUT_MS.min(raw.refresh_ms.filter(|ms| *ms > 0).unwrap_or(DEFAULT_REFRESH_MS));
    let probe_timeout =
        positive_ms(&format!("{path}.probe_timeout_ms"), raw.probe_timeout_ms, default_probe_timeout, problems);
    if raw.probe_timeout_ms.is_some() && !refresh.is_zero() && probe_timeout > refresh {
        problems.hint(
            format!("{path}.probe_timeout_ms"),
            format!("{} ms is longer than refresh_ms ({} ms)", probe_timeout.as_millis(), refresh.as_millis()),
            "a probe must end before the next one is due: lower probe_timeout_ms or raise refresh_ms",
        );
    }

    Some(UpstreamConfig {
        name: name.to_string(),
        tier: tier?,
        kind: kind?,
        base_url: base_url?,
        api_key_env,
        api_key,
        key_header: key_header?,
        headers,
        query,
        anthropic_version: anthropic_version?,
        max_tokens_default,
        timeout,
        connect_timeout,
        first_byte_timeout,
        warmth: warmth?,
        refresh,
        probe_timeout,
        retries: raw.retries.unwrap_or(if tier == Some(Tier::Local) { 0 } else { 2 }),
        retry_backoff: positive_ms(&format!("{path}.retry_backoff_ms"), raw.retry_backoff_ms, 250, problems),
        retry_backoff_max: positive_ms(
            &format!("{path}.retry_backoff_max_ms"),
            raw.retry_backoff_max_ms,
            8_000,
            problems,
        ),
        circuit_failures: raw.circuit_failures.unwrap_or(5),
        circuit_cooldown: positive_ms(
            &format!("{path}.circuit_cooldown_ms"),
            raw.circuit_cooldown_ms,
            30_000,
            problems,
        ),
        max_concurrent: raw.max_concurrent.unwrap_or(0),
        queue_limit: raw.queue_limit.unwrap_or(64),
        queue_wait: Duration::from_millis(raw.queue_wait_ms.unwrap_or(2_000)),
    })
}

/// `auth_header`: `authorization` means a Bearer token; any other header name gets the
/// bare key. The default depends on the kind.
fn validate_key_header(
    path: &str,
    raw: &RawUpstream,
    kind: Option<UpstreamKind>,
    problems: &mut Problems,
) -> Option<KeyHeader> {
    let Some(text) = raw.auth_header.as_deref() else {
        return Some(match kind {
            Some(UpstreamKind::Anthropic) => KeyHeader::Plain(HeaderName::from_static("x-api-key")),
            _ => KeyHeader::Bearer,
        });
    };
    let at = format!("{path}.auth_header");
    if raw.api_key_env.is_none() {
        problems.hint(
            at.clone(),
            "auth_header is set but there is no key to send",
            "set api_key_env to the variable holding the key, or remove auth_header",
        );
    }
    match HeaderName::try_from(text) {
        Err(_) => {
            problems.hint(
                at,
                format!("\"{text}\" is not a valid header name"),
                "\"authorization\" (Bearer token) or the header the provider reads the key from, e.g. \"api-key\"",
            );
            None
        }
        Ok(name) if name == http::header::AUTHORIZATION => Some(KeyHeader::Bearer),
        Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
            problems.hint(
                at,
                format!("\"{text}\" is set by tierwise itself"),
                "name the header the provider reads the key from",
            );
            None
        }
        Ok(name) => Some(KeyHeader::Plain(name)),
    }
}

/// `headers`: valid names and values, none that tierwise writes itself, none that
/// would clash with the key or (for Anthropic) `anthropic_version`.
fn validate_headers(
    path: &str,
    raw: &RawUpstream,
    kind: Option<UpstreamKind>,
    key_header: Option<&KeyHeader>,
    problems: &mut Problems,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (header, value) in &raw.headers {
        let header_path = format!("{path}.headers.{header}");
        let name = match HeaderName::try_from(header.as_str()) {
            Ok(name) => name,
            Err(_) => {
                problems.add(header_path, "not a valid header name");
                continue;
            }
        };
        let Ok(value) = HeaderValue::try_from(value.as_str()) else {
            problems.add(header_path, "not a valid header value");
            continue;
        };
        if RESERVED_HEADERS.contains(&name.as_str()) {
            problems.hint(header_path, "set by tierwise itself", "remove it");
        } else if raw.api_key_env.is_some() && key_header.is_some_and(|k| k.name() == name) {
            problems.hint(
                header_path,
                "the API key from api_key_env is sent in this header",
                "remove it here; set auth_header to send the key in another header",
            );
        } else if kind == Some(UpstreamKind::Anthropic) && name == "anthropic-version" {
            problems.hint(header_path, "set by anthropic_version", "write anthropic_version = \"...\" instead");
        } else {
            headers.push((name, value));
        }
    }
    headers
}

/// `query`: names must not be empty; values may be anything (they are URL-encoded).
fn validate_query(path: &str, raw: &RawUpstream, problems: &mut Problems) -> Vec<(String, String)> {
    for name in raw.query.keys() {
        if name.trim().is_empty() {
            problems.hint(
                format!("{path}.query"),
                "a parameter has an empty name",
                "e.g. query = { \"api-version\" = \"2024-10-21\" }",
            );
        }
    }
    raw.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `anthropic_version` and `max_tokens_default`: Anthropic's, refused on other kinds so
/// that a misplaced key does not go unnoticed.
fn validate_anthropic(
    path: &str,
    raw: &RawUpstream,
    kind: Option<UpstreamKind>,
    problems: &mut Problems,
) -> (Option<HeaderValue>, u32) {
    if kind == Some(UpstreamKind::OpenAi) {
        for (key, set) in [
            ("anthropic_version", raw.anthropic_version.is_some()),
            ("max_tokens_default", raw.max_tokens_default.is_some()),
        ] {
            if set {
                problems.hint(
                    format!("{path}.{key}"),
                    "only for kind = \"anthropic\"",
                    "remove it, or set kind = \"anthropic\"",
                );
            }
        }
    }
    let text = raw.anthropic_version.as_deref().unwrap_or(crate::upstream::anthropic::API_VERSION);
    let version = match HeaderValue::try_from(text) {
        Ok(value) if !text.trim().is_empty() => Some(value),
        _ => {
            problems.hint(
                format!("{path}.anthropic_version"),
                format!("\"{text}\" is not a valid header value"),
                "e.g. \"2023-06-01\"",
            );
            None
        }
    };
    let max_tokens = raw.max_tokens_default.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        problems.add(format!("{path}.max_tokens_default"), "must be greater than 0");
    }
    (version, max_tokens)
}
