//! `GET /v1/models`: tasks, then direct model aliases, in OpenAI's list shape.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::health::json_response;
use crate::app::AppState;

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

pub async fn list_models(State(state): State<AppState>) -> Response {
    let created = state.loaded_at_unix;
    let entry = |id| ModelEntry { id, object: "model", created, owned_by: "tierwise" };
    let data = state.config.tasks.keys().chain(state.config.models.keys()).map(|id| entry(id.as_str())).collect();
    let body = serde_json::to_vec(&ModelList { object: "list", data }).unwrap_or_default();
    json_response(body)
}
