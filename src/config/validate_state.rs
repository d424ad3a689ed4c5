//! Validation of `[state]`.

use super::raw::RawState;
use super::validate::{positive_ms, Problems};
use super::{OnStateError, RedisConfig, Secret, StateConfig};
use crate::policy::Tier;

pub(super) fn state(raw: &RawState, env: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) -> StateConfig {
    match raw.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            let redis_only = [
                ("url", raw.url.is_some()),
                ("password_env", raw.password_env.is_some()),
                ("username", raw.username.is_some()),
                ("tls_ca_file", raw.tls_ca_file.is_some()),
                ("connect_timeout_ms", raw.connect_timeout_ms.is_some()),
                ("command_timeout_ms", raw.command_timeout_ms.is_some()),
                ("key_prefix", raw.key_prefix.is_some()),
                ("on_error", raw.on_error.is_some()),
                ("cache_tier", raw.cache_tier.is_some()),
            ];
            for (key, _) in redis_only.iter().filter(|(_, set)| *set) {
                problems.hint(
                    format!("state.{key}"),
                    "is set, but state.backend is \"memory\"",
                    "set state.backend = \"redis\" to use Redis, or remove the key",
                );
            }
            StateConfig::Memory
        }
        "redis" => redis(raw, env, problems).map_or(StateConfig::Memory, StateConfig::Redis),
        other => {
            problems.hint(
                "state.backend",
                format!("unknown backend \"{other}\""),
                "\"memory\" (one process) or \"redis\" (shared by replicas)",
            );
            StateConfig::Memory
        }
    }
}

fn redis(raw: &RawState, env: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) -> Option<RedisConfig> {
    let url = match raw.url.as_deref() {
        None => {
            problems.hint("state.url", "missing", "e.g. \"redis://127.0.0.1:6379/0\" (rediss:// for TLS)");
            None
        }
        Some(url) => checked_url(url, problems),
    };
    let password = match raw.password_env.as_deref() {
        None => None,
        Some(var) if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            problems.hint(
                "state.password_env",
                format!("\"{var}\" is not an environment variable name"),
                "name the variable, not the password: e.g. \"TIERWISE_REDIS_PASSWORD\"",
            );
            None
        }
        Some(var) => match env(var).filter(|p| !p.is_empty()) {
            Some(password) => Some(Secret::new(password)),
            None => {
                problems.hint(
                    "state.password_env",
                    format!("the environment variable {var} is not set"),
                    "set it to Redis's password, or remove password_env for a Redis without one",
                );
                None
            }
        },
    };
    let on_error = match raw.on_error.as_deref().unwrap_or("local") {
        "local" => OnStateError::Local,
        "deny" => OnStateError::Deny,
        other => {
            problems.hint(
                "state.on_error",
                format!("unknown policy \"{other}\""),
                "\"local\" (fall back to this process's counters) or \"deny\" (503)",
            );
            OnStateError::Local
        }
    };
    let cache_tier = match raw.cache_tier.as_deref().unwrap_or("server") {
        "server" => Tier::Server,
        "local" => Tier::Local,
        other => {
            problems.hint(
                "state.cache_tier",
                format!("unknown tier \"{other}\""),
                "\"server\" (Redis on the network: no sensitive answers) or \"local\" (Redis on this machine)",
            );
            Tier::Server
        }
    };
    let tls_ca = raw.tls_ca_file.as_deref().and_then(|path| {
        if url.as_deref().is_some_and(|u| !u.starts_with("rediss://")) {
            problems.hint("state.tls_ca_file", "is set, but state.url is not rediss://", "use rediss:// for TLS");
        }
        match std::fs::read(path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                problems.hint(
                    "state.tls_ca_file",
                    format!("{path} holds no PEM certificate"),
                    "a CA certificate in PEM",
                );
                None
            }
            Err(e) => {
                problems.hint("state.tls_ca_file", format!("cannot read {path}: {e}"), "the CA certificate, in PEM");
                None
            }
        }
    });
    let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| "tierwise:".to_string());
    if key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.add("state.key_prefix", "must not contain spaces or control characters");
    }
    // Checked before `url?` can end the function, so every problem is reported at once.
    let connect_timeout = positive_ms("state.connect_timeout_ms", raw.connect_timeout_ms, 1_000, problems);
    let command_timeout = positive_ms("state.command_timeout_ms", raw.command_timeout_ms, 250, problems);
    Some(RedisConfig {
        url: url?,
        username: raw.username.clone().filter(|u| !u.is_empty()),
        password,
        tls_ca,
        connect_timeout,
        command_timeout,
        key_prefix,
        on_error,
        cache_tier,
    })
}

/// A `redis://` or `rediss://` URL without credentials (they would end up in logs and
/// `check-config` output).
fn checked_url(url: &str, problems: &mut Problems) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        problems.hint("state.url", format!("\"{url}\" is not a URL"), "e.g. \"redis://127.0.0.1:6379/0\"");
        return None;
    };
    if scheme != "redis" && scheme != "rediss" {
        problems.hint(
            "state.url",
            format!("unsupported scheme \"{scheme}\""),
            "redis:// (plain TCP) or rediss:// (TLS)",
        );
        return None;
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        problems.hint(
            "state.url",
            "holds credentials",
            "put the password in the environment variable named by state.password_env (and the user in state.username)",
        );
        return None;
    }
    if authority.is_empty() {
        problems.hint("state.url", "names no host", "e.g. \"redis://127.0.0.1:6379/0\"");
        return None;
    }
    Some(url.to_string())
}
