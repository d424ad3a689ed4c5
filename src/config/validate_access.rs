//! Validation of who may run what: profiles, client keys and auth.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::raw::{RawAuth, RawConfig, RawProfile};
use super::validate::Problems;
use super::{AuthConfig, BudgetConfig, ClientKey, KeyLimits, Profile};
use crate::policy::{Locale, Tier};

pub(super) fn profiles(raw: &RawConfig, problems: &mut Problems) -> BTreeMap<String, Arc<Profile>> {
    let mut profiles = BTreeMap::new();
    for (name, raw_profile) in &raw.profiles {
        let profile = profile(name, raw_profile, raw, problems);
        profiles.insert(name.clone(), Arc::new(profile));
    }
    profiles.entry("default".to_string()).or_insert_with(|| Arc::new(Profile::implied_default()));
    profiles
}

fn profile(name: &str, raw: &RawProfile, config: &RawConfig, problems: &mut Problems) -> Profile {
    let path = format!("profiles.{name}");
    super::validate::check_name(&path, name, problems);
    let mut allowed = match &raw.allowed_tiers {
        None => Profile::implied_default().allowed_tiers,
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, text)| tier(&format!("{path}.allowed_tiers[{i}]"), text, problems))
            .collect(),
    };
    allowed.sort();
    allowed.dedup();
    let mut task_overrides = BTreeMap::new();
    for (task, text) in &raw.task_overrides {
        let override_path = format!("{path}.task_overrides.\"{task}\"");
        if !config.tasks.contains_key(task) {
            let known: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
            problems.hint(
                override_path.clone(),
                format!("unknown task \"{task}\""),
                format!("known tasks: {}", known.join(", ")),
            );
        }
        if let Some(t) = tier(&override_path, text, problems) {
            task_overrides.insert(task.clone(), t);
        }
    }
    let locale = match raw.locale.as_deref() {
        None => Locale::En,
        Some(text) => Locale::parse(text).unwrap_or_else(|| {
            problems.hint(format!("{path}.locale"), format!("unknown locale \"{text}\""), "supported: en, de");
            Locale::En
        }),
    };
    Profile {
        name: name.to_string(),
        allowed_tiers: allowed,
        cloud_consent: raw.cloud_consent.unwrap_or(false),
        task_overrides,
        fallback_to_rules_on_error: raw.fallback_to_rules_on_error.unwrap_or(false),
        locale,
        budget: budget(&path, raw.budget_usd_daily, raw.budget_usd_monthly, problems),
    }
}

/// `budget_usd_daily` / `budget_usd_monthly` of a key or profile at `path`.
fn budget(path: &str, daily: Option<f64>, monthly: Option<f64>, problems: &mut Problems) -> BudgetConfig {
    let mut check = |key: &str, usd: Option<f64>| {
        let usd = usd?;
        if usd.is_finite() && usd >= 0.0 {
            Some(usd)
        } else {
            problems.hint(format!("{path}.{key}"), format!("{usd} is not an amount"), "USD, zero or more, e.g. 5.0");
            None
        }
    };
    BudgetConfig { daily_usd: check("budget_usd_daily", daily), monthly_usd: check("budget_usd_monthly", monthly) }
}

/// A tier name where any tier (including `none`) is meaningful.
pub(super) fn tier(path: &str, text: &str, problems: &mut Problems) -> Option<Tier> {
    let parsed = text.parse::<Tier>().ok();
    if parsed.is_none() {
        problems.hint(path.to_string(), format!("unknown tier \"{text}\""), "one of: none, local, server, cloud");
    }
    parsed
}

pub(super) fn auth(
    raw: &RawConfig,
    profiles: &BTreeMap<String, Arc<Profile>>,
    listen_is_loopback: bool,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> AuthConfig {
    let RawAuth { required, allow_unauthenticated_network } = &raw.auth;
    let required = required.unwrap_or(false);
    let allow_unauthenticated_network = allow_unauthenticated_network.unwrap_or(false);
    let mut keys = Vec::new();
    for (i, key) in raw.keys.iter().enumerate() {
        let path = format!("keys[{i}]");
        let profile = match key.profile.as_deref() {
            None => {
                problems.hint(format!("{path}.profile"), "missing", "name the profile this key gets");
                continue;
            }
            Some(p) if !profiles.contains_key(p) => {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                problems.hint(
                    format!("{path}.profile"),
                    format!("unknown profile \"{p}\""),
                    format!("known profiles: {}", known.join(", ")),
                );
                continue;
            }
            Some(p) => p.to_string(),
        };
        let digest = match (&key.key_env, &key.key_sha256) {
            (Some(var), None) => match env(var).filter(|v| !v.is_empty()) {
                Some(value) => sha256(value.as_bytes()),
                None => {
                    problems.hint(
                        format!("{path}.key_env"),
                        format!("the environment variable {var} is not set"),
                        "set it, or give key_sha256 instead",
                    );
                    continue;
                }
            },
            (None, Some(hex)) => match parse_hex_digest(hex) {
                Some(digest) => digest,
                None => {
                    problems.hint(
                        format!("{path}.key_sha256"),
                        "not a SHA-256 hex digest (64 hex digits)",
                        "printf %s \"$KEY\" | sha256sum",
                    );
                    continue;
                }
            },
            _ => {
                problems.hint(
                    path,
                    "give exactly one of key_env or key_sha256",
                    "key_env = \"TIERWISE_KEY_TEAM\" or key_sha256 = \"<hex>\"",
                );
                continue;
            }
        };
        let limits = KeyLimits {
            requests_per_minute: per_minute(&path, "requests_per_minute", key.requests_per_minute, problems),
            tokens_per_minute: per_minute(&path, "tokens_per_minute", key.tokens_per_minute, problems),
        };
        let name =
            key.name.clone().or_else(|| key.key_env.clone()).unwrap_or_else(|| format!("key-{}", hex(&digest[..4])));
        let budget = budget(&path, key.budget_usd_daily, key.budget_usd_monthly, problems);
        keys.push(ClientKey { digest, name, budget, profile, admin: key.admin.unwrap_or(false), limits });
    }
    if required && raw.keys.is_empty() {
        problems.hint(
            "auth.required",
            "true, but no [[keys]] are configured",
            "add [[keys]] entries, or set auth.required = false",
        );
    }
    if !required && !listen_is_loopback && !allow_unauthenticated_network {
        problems.hint(
            "server.listen",
            "a non-loopback address without auth would let anyone on the network use your models",
            "set auth.required = true with [[keys]], or, knowingly, auth.allow_unauthenticated_network = true",
        );
    }
    AuthConfig { required, allow_unauthenticated_network, keys }
}

/// A per-minute limit: positive, or absent for none.
fn per_minute(path: &str, field: &str, value: Option<u64>, problems: &mut Problems) -> Option<u64> {
    if value == Some(0) {
        problems.hint(format!("{path}.{field}"), "must be at least 1", "leave it out for no limit");
    }
    value.filter(|v| *v > 0)
}

/// Lower-case hex of `bytes` (digests in keys, names and caches).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests_parse_exactly() {
        let digest = sha256(b"abc");
        let hex = hex(&digest);
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(parse_hex_digest(&hex), Some(digest));
        assert_eq!(parse_hex_digest(&hex[..62]), None);
        assert_eq!(parse_hex_digest(&"zz".repeat(32)), None);
    }
}
