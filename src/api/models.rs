//! `GET /v1/models`: tasks, then direct model aliases, in OpenAI's list shape. Each entry
//! also says whether the caller's profile can run it at all (`tierwise.runnable`) and
//! which APIs it serves (`tierwise.serves`: `chat.completions`, `responses`,
//! `embeddings`).

use axum::response::Response;
use serde::Serialize;

use super::caller::Caller;
use super::health::json_response;
use crate::explain::explain;
use crate::policy::{self, Classification, Resolved};

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
    tierwise: Extra,
}

#[derive(Serialize)]
struct Extra {
    /// `task` or `model`.
    kind: &'static str,
    /// Whether the caller's profile can run it with the task's own content class.
    runnable: bool,
    /// The APIs it answers: what every model of a task's chain serves.
    serves: Vec<&'static str>,
}

fn serves(config: &crate::config::Config, kind: &str, name: &str) -> Vec<&'static str> {
    let chain: Vec<&String> = match config.tasks.get(name).filter(|_| kind == "task") {
        Some(task) => task.chain.iter().collect(),
        None => config.models.get(name).map(|m| &m.alias).into_iter().collect(),
    };
    let all = |able: fn(&crate::config::Serves) -> bool| {
        chain.iter().all(|m| config.models.get(*m).is_some_and(|m| able(&m.serves)))
    };
    let mut names = Vec::new();
    if !chain.is_empty() && all(|s| s.chat) {
        names.extend(["chat.completions", "responses"]);
    }
    if !chain.is_empty() && all(|s| s.embeddings) {
        names.push("embeddings");
    }
    names
}

pub async fn list_models(caller: Caller) -> Response {
    let config = &caller.generation.config;
    let locale = caller.locale;
    let created = caller.generation.loaded_at_unix;
    let entry = |id: &'static str, name: &str| {
        let direct = id == "model";
        let class = if direct {
            policy::ContentClass::Normal
        } else {
            config.tasks.get(name).map(|t| t.content_class).unwrap_or(policy::ContentClass::Normal)
        };
        let classification = Classification { class, because: Vec::new() };
        let resolved = Resolved { task: name.to_string(), direct };
        explain(config, &resolved, &caller.profile, &classification, locale).runnable()
    };
    let data = config
        .tasks
        .keys()
        .map(|id| (id, "task"))
        .chain(config.models.keys().map(|id| (id, "model")))
        .map(|(id, kind)| ModelEntry {
            id: id.as_str(),
            object: "model",
            created,
            owned_by: "tierwise",
            tierwise: Extra { kind, runnable: entry(kind, id), serves: serves(config, kind, id) },
        })
        .collect();
    let body = serde_json::to_vec(&ModelList { object: "list", data }).unwrap_or_default();
    json_response(body)
}
