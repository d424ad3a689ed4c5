//! `POST /v1/tierwise/explain`: a chat request's plan without calling any model. The body
//! is a chat request; admins may add `"profile": "NAME"` to explain for another profile.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::Value;

use super::caller::{self, Caller};
use super::chat::{classify, task_name};
use super::extract::JsonBody;
use super::health::json_response;
use crate::error::ApiError;
use crate::explain::explain;
use crate::openai::ChatRequest;
use crate::policy;

pub async fn explain_request(
    caller: Caller,
    headers: HeaderMap,
    JsonBody(mut request): JsonBody<ChatRequest>,
) -> Response {
    match run(&caller, &headers, &mut request) {
        Ok(body) => json_response(body),
        Err(err) => err.into_response(),
    }
}

fn run(caller: &Caller, headers: &HeaderMap, request: &mut ChatRequest) -> Result<Vec<u8>, ApiError> {
    let config = &caller.generation.config;
    let profile = match request.rest.remove("profile") {
        None => &caller.profile,
        Some(Value::String(name)) if name == caller.profile.name => &caller.profile,
        Some(Value::String(name)) => {
            if !caller.admin {
                return Err(ApiError::Forbidden {
                    code: "admin_only",
                    message: "explaining for another profile needs an admin key ([[keys]] admin = true)".into(),
                });
            }
            config.profiles.get(&name).ok_or_else(|| {
                let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
                ApiError::invalid(
                    format!("unknown profile \"{name}\"; known: {}", known.join(", ")),
                    Some("profile".into()),
                )
            })?
        }
        Some(_) => return Err(ApiError::invalid("`profile` must be a string", Some("profile".into()))),
    };
    let locale = caller::locale(headers, profile);
    let name = task_name(headers, request)?.to_string();
    let resolved = policy::resolve(config, &name)
        .map_err(|unknown| ApiError::ModelNotFound { name: unknown.name, known: unknown.known })?;
    let class = classify(config, &resolved, headers, request)?;
    let explanation = explain(config, &resolved, profile, &class, locale);
    serde_json::to_vec(&explanation).map_err(|e| ApiError::Internal(format!("cannot encode the explanation: {e}")))
}
