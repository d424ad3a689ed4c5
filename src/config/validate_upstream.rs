//! Validation of `[upstreams.NAME]`: tier, kind, base URL, key and headers, timeouts,
//! warmth, retries, circuit breaker and concurrency.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use super::raw::RawUpstream;
use super::validate::{positive_ms, Problems};
use super::{KeyHeader, ResponsesApi, Secret, UpstreamConfig, UpstreamKind, WarmthSource};
use crate::policy::Tier;

const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 600_000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 120_000;
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Headers tierwise writes itself, which `headers` and `auth_header` may not set.
const RESERVED_HEADERS: [&str; 6] = ["content-type", "content-length", "host", "transfer-encoding", "connection", "te"];
const DEFAULT_REFRESH_MS: u64 = 2_000;
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 200;

pub(super) fn upstream(
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
    let responses = match (raw.responses.as_deref(), kind) {
        (None | Some("translate"), _) => Some(ResponsesApi::Translate),
        (Some("native"), Some(UpstreamKind::Anthropic)) => {
            problems.hint(
                format!("{path}.responses"),
                "Anthropic's API has no Responses endpoint",
                "remove it: Responses requests are translated for this upstream",
            );
            None
        }
        (Some("native"), _) => Some(ResponsesApi::Native),
        (Some(other), _) => {
            problems.hint(
                format!("{path}.responses"),
                format!("unknown value \"{other}\""),
                "one of: translate (the default), native (the upstream serves POST /responses)",
            );
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
        responses: responses?,
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
