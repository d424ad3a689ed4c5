//! Who is calling: a client key (`Authorization: Bearer` or `x-api-key`) maps to a
//! profile. Keys are compared as SHA-256 digests, in constant time.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::config::{ClientKey, Config, Profile};
use crate::error::ApiError;
use crate::policy::Locale;

pub struct Caller<'a> {
    pub profile: &'a Profile,
    /// May use admin endpoints (explain for any profile).
    pub admin: bool,
    /// The key presented, when it is a configured one (it carries the rate limits).
    pub key: Option<&'a ClientKey>,
}

/// The caller's profile. Every key the request presents counts (each `Authorization:
/// Bearer` and `x-api-key` header): one that matches no configured key is a 401 — a
/// valid key beside it does not rescue it — and two different valid keys are a 400.
/// Without `auth.required`, a request that presents no key gets profile `default`, and
/// so does one whose key is ignored because no `[[keys]]` are configured at all (the
/// placeholder key an SDK insists on sending).
pub fn identify<'a>(config: &'a Config, headers: &HeaderMap) -> Result<Caller<'a>, ApiError> {
    let presented = presented_keys(headers);
    let open = !config.auth.required && config.auth.keys.is_empty();
    let mut matched: Option<(&ClientKey, &'static str)> = None;
    for (header, key) in presented.iter().filter(|_| !open) {
        let Some(found) = lookup(config, key) else {
            return Err(ApiError::Unauthorized(format!("invalid API key in the {header} header")));
        };
        match matched {
            Some((first, first_header)) if first.digest != found.digest => {
                return Err(ApiError::invalid(
                    format!("two different API keys, in the {first_header} and {header} headers: send one"),
                    Some(header.to_string()),
                ));
            }
            Some(_) => {}
            None => matched = Some((found, header)),
        }
    }
    if let Some((key, _)) = matched {
        let profile = config.profiles.get(&key.profile).ok_or_else(|| {
            ApiError::Unauthorized(format!("the key's profile \"{}\" is not configured", key.profile))
        })?;
        return Ok(Caller { profile, admin: key.admin, key: Some(key) });
    }
    if config.auth.required {
        return Err(ApiError::Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key".into()));
    }
    let profile = config.profiles.get("default").ok_or_else(|| ApiError::Internal("no default profile".into()))?;
    Ok(Caller { profile, admin: false, key: None })
}

/// The configured key `key` is, compared against every key without stopping early, so
/// timing says nothing.
fn lookup<'a>(config: &'a Config, key: &str) -> Option<&'a ClientKey> {
    let digest = crate::config::sha256(key.as_bytes());
    let mut found = None;
    for client_key in &config.auth.keys {
        if constant_time_eq(&digest, &client_key.digest) && found.is_none() {
            found = Some(client_key);
        }
    }
    found
}

/// Every non-empty key in the request, with the header it came in.
fn presented_keys(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    let bearer = headers.get_all(AUTHORIZATION).into_iter().filter_map(|v| {
        let (scheme, token) = v.to_str().ok()?.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| ("Authorization", token.trim()))
    });
    let plain = headers.get_all("x-api-key").into_iter().filter_map(|v| Some(("x-api-key", v.to_str().ok()?.trim())));
    bearer.chain(plain).filter(|(_, key)| !key.is_empty()).collect()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Accept-Language` if it names a language tierwise speaks, else the profile's.
pub fn locale(headers: &HeaderMap, profile: &Profile) -> Locale {
    headers
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Locale::from_accept_language)
        .unwrap_or(profile.locale)
}
