//! `POST /v1/responses`: the Responses API, translated to the chat completion it amounts
//! to (`openai::responses`), served by the chat pipeline — caller, limits, task, class,
//! plan, run, verification, trail, record — and answered as a `response` object or the
//! Responses stream events.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use http::HeaderMap;
use serde_json::{Map, Value};

use super::caller::Caller;
use super::chat::{serve, Call};
use super::extract::JsonBody;
use super::job::Wire;
use crate::app::{AppState, ResponseDeadline};
use crate::error::ApiError;
use crate::openai::responses::{to_chat, Echo};
use crate::openai::strict::Strict;
use crate::openai::ChatRequest;

pub async fn create_response(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    cut_off: Option<Extension<ResponseDeadline>>,
    body: Result<JsonBody<Strict>, ApiError>,
) -> Response {
    let body = body.and_then(|JsonBody(Strict(value))| match value {
        Value::Object(body) => Ok(body),
        _ => Err(ApiError::invalid("the body must be a JSON object (a Responses request)", None)),
    });
    let (wire, request) = match body {
        Ok(body) => match translate(&body) {
            Ok((request, echo)) => (Wire::Responses { echo, body: Arc::new(body) }, Ok(request)),
            Err(err) => (Wire::Responses { echo: Echo::default(), body: Arc::new(body) }, Err(err)),
        },
        Err(err) => (Wire::Responses { echo: Echo::default(), body: Arc::default() }, Err(err)),
    };
    serve(Call { state, caller, headers, cut_off, wire }, request).await
}

fn translate(body: &Map<String, Value>) -> Result<(ChatRequest, Echo), ApiError> {
    let (chat, echo) = to_chat(body).map_err(|u| ApiError::invalid(u.message, Some(u.param)))?;
    let request = crate::api::extract::parse::<ChatRequest>(chat.to_string().as_bytes())?;
    Ok((request, echo))
}
