//! `POST /v1/embeddings`: routed by the same task policy as chat, over models that serve
//! embeddings (`models.NAME.serves`). Sensitive input is embedded only by local models;
//! a failing model gives way to the next one the plan allows; the vectors come back byte
//! for byte as the upstream sent them (`encoding_format: "base64"` included), with the
//! trail in the headers and in the body's `tierwise` member.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use http::HeaderMap;
use serde_json::Value;

use super::caller::Caller;
use super::chat::{serve, Call};
use super::extract::JsonBody;
use super::job::Wire;
use crate::app::{AppState, ResponseDeadline};
use crate::error::ApiError;
use crate::openai::strict::Strict;
use crate::openai::ChatRequest;

pub async fn create_embeddings(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    cut_off: Option<Extension<ResponseDeadline>>,
    body: Result<JsonBody<Strict>, ApiError>,
) -> Response {
    let request = body.and_then(|JsonBody(Strict(value))| request(value));
    serve(Call { state, caller, headers, cut_off, wire: Wire::Embeddings }, request).await
}

/// The embeddings body as a chat request without messages: every field but `model` is
/// forwarded as it came.
fn request(body: Value) -> Result<ChatRequest, ApiError> {
    let Value::Object(mut rest) = body else {
        return Err(ApiError::invalid("the body must be a JSON object (an embeddings request)", None));
    };
    let model = match rest.remove("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) => Some(model),
        Some(_) => return Err(ApiError::invalid("`model` must be a string", Some("model".into()))),
    };
    match rest.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "`input` must be a string, a list of strings, or token ids (a list of integers, or of lists)",
                Some("input".into()),
            ))
        }
        None => return Err(ApiError::invalid("missing `input`", Some("input".into()))),
    }
    Ok(ChatRequest { model, messages: Vec::new(), stream: None, rest })
}

/// Whether `input` holds token ids, which the detector cannot read.
pub fn holds_token_ids(request: &ChatRequest) -> bool {
    let Some(Value::Array(items)) = request.rest.get("input") else { return false };
    items.iter().any(|item| item.is_number() || item.as_array().is_some_and(|ids| ids.iter().any(Value::is_number)))
}
