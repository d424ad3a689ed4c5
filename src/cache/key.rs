//! Which requests are cached, and under which key: a canonical digest of the task and
//! its config version, the caller's namespace, the content class, and every field of
//! the request that changes the answer. Field order, whitespace and number spelling do
//! not change the key; `stream` and fields that only label the request do not either.

use serde_json::Value;

use crate::canonical::Digest;
use crate::config::CacheConfig;
use crate::openai::ChatRequest;
use crate::policy::ContentClass;

/// Fields that change how the answer is delivered or labelled, not what it says.
const NOT_IN_KEY: [&str; 6] = ["stream_options", "user", "metadata", "store", "safety_identifier", "prompt_cache_key"];

/// Who may read an entry: callers of one profile (and one key, with `per_key`).
pub struct Namespace<'a> {
    pub task: &'a str,
    pub profile: &'a str,
    /// The client key's digest, with `per_key`.
    pub key: Option<&'a [u8; 32]>,
    pub class: ContentClass,
}

/// The cache key of `request` under `config` in `namespace`.
pub fn key(config: &CacheConfig, namespace: &Namespace<'_>, request: &ChatRequest) -> [u8; 32] {
    let mut digest = Digest::default();
    digest.text("tierwise cache v1").text(namespace.task).json(&Value::String(crate::config::hex(&config.version)));
    digest.text(namespace.profile).text(&namespace.key.map(|k| crate::config::hex(k)).unwrap_or_default());
    digest.text(namespace.class.as_str());
    let messages = serde_json::to_value(&request.messages).unwrap_or(Value::Null);
    digest.json(&messages);
    let mut rest = request.rest.clone();
    for field in NOT_IN_KEY {
        rest.remove(field);
    }
    digest.json(&Value::Object(rest));
    digest.finish()
}

/// Whether the answer is meant to be the same every time: `temperature` 0, or a `seed`.
pub fn is_deterministic(request: &ChatRequest) -> bool {
    let zero_temperature = request.rest.get("temperature").and_then(Value::as_f64) == Some(0.0);
    zero_temperature || request.rest.get("seed").is_some_and(|s| !s.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(version: u8) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            deterministic_only: true,
            per_key: false,
            version: [version; 32],
        }
    }

    fn request(text: &str) -> ChatRequest {
        serde_json::from_str(text).unwrap()
    }

    fn namespace<'a>(profile: &'a str, key: Option<&'a [u8; 32]>) -> Namespace<'a> {
        Namespace { task: "chat", profile, key, class: ContentClass::Normal }
    }

    #[test]
    fn order_whitespace_numbers_and_delivery_fields_do_not_change_the_key() {
        let ns = namespace("default", None);
        let a = request(
            r#"{"model":"chat","temperature":0,"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":2}}}]}"#,
        );
        let b = request(
            "{ \"tools\" : [ {\"function\": {\"parameters\": {\"a\": 2.0, \"b\": 1}, \"name\": \"f\"}, \"type\": \"function\"} ],\n \"messages\": [{\"content\": \"Hi\", \"role\": \"user\"}], \"temperature\": 0.0, \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"user\": \"u-1\", \"model\": \"other-alias\" }",
        );
        assert_eq!(key(&config(1), &ns, &a), key(&config(1), &ns, &b));
    }

    #[test]
    fn what_changes_the_answer_or_the_reader_changes_the_key() {
        let base = request(r#"{"temperature":0,"messages":[{"role":"user","content":"Hi"}]}"#);
        let ns = namespace("default", None);
        let k = key(&config(1), &ns, &base);
        let changed = [
            r#"{"temperature":0,"messages":[{"role":"user","content":"Hi!"}]}"#,
            r#"{"temperature":0,"messages":[{"role":"system","content":"Hi"}]}"#,
            r#"{"temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#,
            r#"{"temperature":0,"response_format":{"type":"json_object"},"messages":[{"role":"user","content":"Hi"}]}"#,
            r#"{"temperature":0,"top_k":3,"messages":[{"role":"user","content":"Hi"}]}"#,
        ];
        for text in changed {
            assert_ne!(key(&config(1), &ns, &request(text)), k, "{text}");
        }
        assert_ne!(key(&config(2), &ns, &base), k, "another config version");
        assert_ne!(key(&config(1), &namespace("team", None), &base), k, "another profile");
        assert_ne!(key(&config(1), &namespace("default", Some(&[7; 32])), &base), k, "another key");
        let sensitive = Namespace { class: ContentClass::Sensitive, ..namespace("default", None) };
        assert_ne!(key(&config(1), &sensitive, &base), k, "another class");
    }

    #[test]
    fn deterministic_means_temperature_zero_or_a_seed() {
        assert!(is_deterministic(&request(r#"{"temperature":0.0,"messages":[]}"#)));
        assert!(is_deterministic(&request(r#"{"seed":42,"temperature":0.7,"messages":[]}"#)));
        assert!(!is_deterministic(&request(r#"{"messages":[]}"#)));
        assert!(!is_deterministic(&request(r#"{"temperature":0.2,"seed":null,"messages":[]}"#)));
    }
}
