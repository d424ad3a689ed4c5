//! What the probed servers answer, and how each answer becomes the set of loaded model
//! names. Pure: bytes in, names out.
//!
//! Every shape here tolerates fields it does not know, so a newer server version that
//! adds some still parses.

use std::collections::HashSet;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

/// llama-swap's `GET /running`: `{"running":[{"model":"x","state":"ready",...}]}`.
/// Older versions list only ready models (some only `model` and `state`); newer ones
/// also list `starting` and `stopping` ones, with `cmd`, `proxy`, `ttl`, `name`, ...
#[derive(Deserialize)]
struct Running {
    #[serde(default)]
    running: Option<Vec<RunningEntry>>,
}

#[derive(Deserialize)]
struct RunningEntry {
    model: String,
    /// Absent in no known version; an entry without one is listed as running, so ready.
    #[serde(default)]
    state: Option<String>,
}

/// OpenAI's model list as llama-server (router mode) and newer llama-swap extend it:
/// `{"data":[{"id":"m","status":{"value":"loaded"},...}],"object":"list"}`.
#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    data: Option<Vec<ModelEntry>>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    /// llama-server router mode: other names the model answers to.
    #[serde(default)]
    aliases: Option<Value>,
    #[serde(default)]
    status: Option<ModelStatus>,
}

#[derive(Deserialize)]
struct ModelStatus {
    /// `loaded`, `loading`, `unloaded` (and `failed` in some llama-server versions).
    #[serde(default)]
    value: Option<String>,
}

/// ollama's `GET /api/ps`: `{"models":[{"name":"llama3:latest","model":"llama3:latest",...}]}`.
#[derive(Deserialize)]
struct Ps {
    #[serde(default)]
    models: Option<Vec<PsEntry>>,
}

#[derive(Deserialize)]
struct PsEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// The models llama-swap's `/running` reports ready; `starting` and `stopping` ones
/// are not warm.
pub fn running_ready(body: &[u8]) -> Result<HashSet<String>, Unexpected> {
    let running: Running = parse(body, "/running")?;
    Ok(running
        .running
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.state.as_deref().is_none_or(|state| state == "ready"))
        .map(|entry| entry.model)
        .collect())
}

/// The models a `/v1/models` list reports `loaded` (ids and aliases), or `None` when no
/// entry carries a `status` (an older llama-swap, a single-model llama-server).
pub fn models_loaded(body: &[u8]) -> Result<Option<HashSet<String>>, Unexpected> {
    let list: ModelList = parse(body, "/v1/models")?;
    let entries = list.data.unwrap_or_default();
    if !entries.is_empty() && entries.iter().all(|entry| entry.status.is_none()) {
        return Ok(None);
    }
    let mut loaded = HashSet::new();
    for entry in entries {
        if entry.status.and_then(|s| s.value).as_deref() != Some("loaded") {
            continue;
        }
        if let Some(Value::Array(aliases)) = entry.aliases {
            loaded.extend(aliases.into_iter().filter_map(|a| a.as_str().map(str::to_string)));
        }
        loaded.insert(entry.id);
    }
    Ok(Some(loaded))
}

/// The models ollama's `/api/ps` lists. A `name:latest` also counts as `name`, the way
/// ollama itself resolves a name without a tag.
pub fn ollama_loaded(body: &[u8]) -> Result<HashSet<String>, Unexpected> {
    let ps: Ps = parse(body, "/api/ps")?;
    let mut loaded = HashSet::new();
    for entry in ps.models.unwrap_or_default() {
        for name in [entry.name, entry.model].into_iter().flatten() {
            if let Some(untagged) = name.strip_suffix(":latest") {
                loaded.insert(untagged.to_string());
            }
            loaded.insert(name);
        }
    }
    Ok(loaded)
}

/// An answer that is not the shape the endpoint documents.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint} answered something unexpected ({source})")]
pub struct Unexpected {
    pub endpoint: &'static str,
    #[source]
    pub source: serde_json::Error,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], endpoint: &'static str) -> Result<T, Unexpected> {
    serde_json::from_slice(body).map_err(|source| Unexpected { endpoint, source })
}

/// The server root the warmth endpoints live under: `base_url` without a trailing `/v1`
/// path segment (and without query or fragment). `http://h:8080/v1` → `http://h:8080/`;
/// `https://h/llama/v1/` → `https://h/llama/`; `http://h:11434` → `http://h:11434/`.
pub fn server_root(base_url: &Url) -> Url {
    let mut root = base_url.clone();
    let trimmed = base_url.path().trim_end_matches('/');
    let without_version = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    root.set_path(&format!("{without_version}/"));
    root.set_query(None);
    root.set_fragment(None);
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &HashSet<String>) -> Vec<&str> {
        let mut list: Vec<&str> = set.iter().map(String::as_str).collect();
        list.sort_unstable();
        list
    }

    #[test]
    fn running_keeps_only_ready_entries() {
        let newest = br#"{"running":[{"cmd":"llama-server --port 9001 -m a.gguf","description":"","model":"a","name":"","proxy":"http://127.0.0.1:9001","state":"ready","ttl":300},{"cmd":"llama-server --port 9002 -m b.gguf","description":"","model":"b","name":"","proxy":"http://127.0.0.1:9002","state":"starting","ttl":0},{"cmd":"x","description":"","model":"c","name":"","proxy":"http://127.0.0.1:9003","state":"stopping","ttl":0}]}"#;
        assert_eq!(names(&running_ready(newest).unwrap()), ["a"]);
        let minimal = br#"{"running":[{"model":"a","state":"ready"},{"model":"b","state":"ready"}]}"#;
        assert_eq!(names(&running_ready(minimal).unwrap()), ["a", "b"]);
        assert!(running_ready(br#"{"running":[]}"#).unwrap().is_empty());
        assert!(running_ready(br#"{"running":null}"#).unwrap().is_empty());
        assert!(running_ready(b"OK").unwrap_err().to_string().contains("/running answered something unexpected"));
    }

    #[test]
    fn model_status_loaded_is_warm() {
        let swap = br#"{"data":[{"created":1764000000,"id":"a","object":"model","owned_by":"llama-swap","status":{"value":"loaded"}},{"created":1764000000,"id":"b","object":"model","owned_by":"llama-swap","status":{"value":"unloaded"}}],"object":"list"}"#;
        assert_eq!(names(&models_loaded(swap).unwrap().unwrap()), ["a"]);
        let router = br#"{"data":[{"id":"smollm2","aliases":["small"],"tags":[],"object":"model","owned_by":"llamacpp","created":1795241931,"status":{"value":"loaded","args":["llama-server","--port","42789"]}},{"id":"big","aliases":[],"status":{"value":"loading"}}],"object":"list"}"#;
        assert_eq!(names(&models_loaded(router).unwrap().unwrap()), ["small", "smollm2"]);
    }

    #[test]
    fn a_list_without_status_says_nothing() {
        let old_swap =
            b"{\"data\":[{\"created\":1764000000,\"id\":\"a\",\"object\":\"model\",\"owned_by\":\"llama-swap\"}]}\n";
        assert_eq!(models_loaded(old_swap).unwrap(), None);
        let single = fixture("llama-server/models.json");
        assert_eq!(models_loaded(&single).unwrap(), None);
        assert_eq!(models_loaded(br#"{"data":[],"object":"list"}"#).unwrap(), Some(HashSet::new()));
    }

    #[test]
    fn ollama_lists_loaded_models_with_and_without_tag() {
        let ps = br#"{"models":[{"name":"llama3:latest","model":"llama3:latest","size":5137025024,"digest":"365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_0"},"expires_at":"2024-06-04T14:38:31.83753-07:00","size_vram":5137025024},{"name":"qwen2.5:0.5b","model":"qwen2.5:0.5b","size":1,"digest":"x","details":{},"expires_at":"","size_vram":1}]}"#;
        assert_eq!(names(&ollama_loaded(ps).unwrap()), ["llama3", "llama3:latest", "qwen2.5:0.5b"]);
        assert!(ollama_loaded(br#"{"models":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn the_root_drops_the_version_path() {
        let root = |base: &str| server_root(&Url::parse(base).unwrap()).to_string();
        assert_eq!(root("http://127.0.0.1:8080/v1"), "http://127.0.0.1:8080/");
        assert_eq!(root("http://127.0.0.1:8080/v1/"), "http://127.0.0.1:8080/");
        assert_eq!(root("https://gpu.lan/llama/v1?x=1"), "https://gpu.lan/llama/");
        assert_eq!(root("http://127.0.0.1:11434"), "http://127.0.0.1:11434/");
        assert_eq!(root("http://h/v1beta"), "http://h/v1beta/");
        let url = server_root(&Url::parse("http://h:8080/v1").unwrap()).join("running").unwrap();
        assert_eq!(url.as_str(), "http://h:8080/running");
    }

    fn fixture(path: &str) -> Vec<u8> {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path);
        std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
    }
}
