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

/// The caller's profile. With `auth.required`, a missing or unknown key is a 401;
/// without, such requests get profile `default`.
pub fn identify<'a>(config: &'a Config, headers: &HeaderMap) -> Result<Caller<'a>, ApiError> {
    let presented = presented_key(headers);
    let matched = presented.and_then(|key| {
        let digest = crate::config::sha256(key.as_bytes());
        // Compare against every key, without stopping early, so timing says nothing.
        let mut found = None;
        for client_key in &config.auth.keys {
            if constant_time_eq(&digest, &client_key.digest) && found.is_none() {
                found = Some(client_key);
            }
        }
        found
    });
    if let Some(key) = matched {
        if let Some(profile) = config.profiles.get(&key.profile) {
            return Ok(Caller { profile, admin: key.admin, key: Some(key) });
        }
    }
    if config.auth.required {
        let message = match presented {
            None => "missing API key: send Authorization: Bearer <key> or x-api-key",
            Some(_) => "invalid API key",
        };
        return Err(ApiError::Unauthorized(message.into()));
    }
    let profile = config.profiles.get("default").ok_or_else(|| ApiError::Internal("no default profile".into()))?;
    Ok(Caller { profile, admin: false, key: None })
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)).filter(|k| !k.is_empty())
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
