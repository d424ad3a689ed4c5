//! Who is calling, as an extractor: a client key (`Authorization: Bearer` or `x-api-key`)
//! maps to a profile, compared as SHA-256 digests in constant time. A handler that takes
//! a [`Caller`] runs only for a known caller; one that takes [`Admin`], only for an
//! admin key. The caller carries the config generation its key was checked against, so
//! a reload mid-request cannot change who the caller is.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderMap;

use crate::app::{AppState, Generation};
use crate::config::{ClientKey, Config, Profile};
use crate::error::ApiError;
use crate::policy::Locale;
use crate::state::KeyId;

/// A known caller.
pub struct Caller {
    /// The config and upstreams this request runs with.
    pub generation: Arc<Generation>,
    pub profile: Arc<Profile>,
    /// May use admin endpoints (explain for any profile, reload).
    pub admin: bool,
    /// The key presented, when it is a configured one: it carries the rate limits.
    pub key: Option<KeyId>,
    /// `Accept-Language` if it names a language tierwise speaks, else the profile's.
    pub locale: Locale,
}

/// A caller with an admin key.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let generation = state.generation();
        let (profile, admin, key) = identify(&generation.config, &parts.headers)?;
        let locale = locale(&parts.headers, &profile);
        Ok(Caller { generation, profile, admin, key, locale })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.admin {
            return Err(ApiError::Forbidden {
                code: "admin_only",
                message: "this needs an admin key ([[keys]] admin = true)".into(),
            });
        }
        Ok(Admin(caller))
    }
}

/// The caller's profile, whether they are an admin, and their key. Every key the request
/// presents counts (each `Authorization: Bearer` and `x-api-key` header): one that
/// matches no configured key is a 401 — a valid key beside it does not rescue it — and
/// two different valid keys are a 400. Without `auth.required`, a request that presents
/// no key gets profile `default`, and so does one whose key is ignored because no
/// `[[keys]]` are configured at all (the placeholder key an SDK insists on sending).
pub fn identify(config: &Config, headers: &HeaderMap) -> Result<(Arc<Profile>, bool, Option<KeyId>), ApiError> {
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
        return Ok((profile.clone(), key.admin, Some(KeyId::from(key))));
    }
    if config.auth.required {
        return Err(ApiError::Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key".into()));
    }
    let profile = config.profiles.get("default").ok_or_else(|| ApiError::Internal("no default profile".into()))?;
    Ok((profile.clone(), false, None))
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
