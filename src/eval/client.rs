//! Asking tierwise: an in-process server on 127.0.0.1 (port 0) built from the config, or
//! a running tierwise (`--url`). Either way a request goes through the run loop users
//! get, and its answer carries the trail (`tierwise` in the body, `error.skipped` when
//! it failed) that eval counts calls, tokens and verdicts from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::dataset::Item;
use crate::app::AppState;
use crate::config::Config;
use crate::upstream::Replay;

/// How long one request may take before eval gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// One step of the trail, as tierwise reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct TrailStep {
    pub kind: String,
    pub tier: String,
    pub model: String,
    #[serde(default)]
    pub verdict: Option<String>,
    /// Present when the answer was verified.
    #[serde(default)]
    pub verify_ms: Option<f64>,
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub verify_calls: Vec<VerifyCall>,
}

impl TrailStep {
    /// A model was called (not skipped).
    pub fn called(&self) -> bool {
        self.kind == "attempt"
    }
}

/// A call made to verify an answer (a judge's).
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyCall {
    pub tier: String,
    pub model: String,
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

/// What one request got.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    /// The answer's text (`choices[0].message.content`, or its tool calls as JSON).
    pub answer: Option<String>,
    /// The tier and model that answered.
    pub tier: Option<String>,
    pub model: Option<String>,
    pub trail: Vec<TrailStep>,
    /// The error's message, when there was no answer.
    pub error: Option<String>,
    pub latency: Duration,
}

/// A problem that ends the whole run: nothing after it could succeed either.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Where requests go.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(base: &str, key: Option<String>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, base: base.trim_end_matches('/').to_string(), key })
    }

    /// Sends `item` to `model` (a task or a model alias) and reads what came back.
    pub async fn ask(&self, model: &str, item: &Item) -> Result<Reply, Fatal> {
        let mut body = item.request.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        body.insert("stream".into(), Value::Bool(false));
        let mut request = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .header("content-type", "application/json")
            .body(Value::Object(body).to_string());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response =
            request.send().await.map_err(|e| Fatal(format!("cannot reach tierwise at {}: {e}", self.base)))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await;
        let latency = started.elapsed();
        let bytes = bytes.map_err(|e| Fatal(format!("tierwise at {} broke off an answer: {e}", self.base)))?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Fatal(format!("tierwise at {} answered {status} with a body that is not JSON: {e}", self.base))
        })?;
        if matches!(status, 401 | 404) {
            let message = json.pointer("/error/message").and_then(Value::as_str).unwrap_or("no message");
            return Err(Fatal(format!("tierwise answered {status} to model \"{model}\": {message}")));
        }
        Ok(read_reply(status, &json, latency))
    }
}

fn read_reply(status: u16, json: &Value, latency: Duration) -> Reply {
    let steps = |v: Option<&Value>| -> Vec<TrailStep> {
        v.and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    };
    if let Some(error) = json.get("error") {
        return Reply {
            status,
            trail: steps(error.get("skipped")),
            error: Some(error.get("message").and_then(Value::as_str).unwrap_or("no message").to_string()),
            latency,
            ..Reply::default()
        };
    }
    let message = json.pointer("/choices/0/message");
    let answer = match message.and_then(|m| m.get("content")) {
        Some(Value::String(text)) => Some(text.clone()),
        _ => message.and_then(|m| m.get("tool_calls")).map(Value::to_string),
    };
    let trail = json.get("tierwise");
    let text = |key: &str| trail.and_then(|t| t.get(key)).and_then(Value::as_str).map(str::to_string);
    Reply {
        status,
        answer,
        tier: text("tier"),
        model: text("model"),
        trail: steps(trail.and_then(|t| t.get("attempts"))),
        error: if trail.is_none() {
            Some("the answer carries no trail: set trail.in_body = true".into())
        } else {
            None
        },
        latency,
    }
}

/// tierwise in this process, on 127.0.0.1 (port 0), answering from `replay` what it has
/// seen.
pub struct InProcess {
    pub state: AppState,
    pub base: String,
    server: JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    pub async fn start(mut config: Config, replay: Arc<Replay>) -> Result<Self, String> {
        config.server.trail_in_body = true;
        config.server.metrics_listen = None;
        config.server.shutdown_grace = Duration::ZERO;
        let state = AppState::replaying(config, Some(replay)).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(crate::server::serve(listener, state.clone()));
        Ok(InProcess { state, base: format!("http://{addr}"), server })
    }

    pub async fn stop(self) {
        self.state.shutdown.cancel();
        if let Ok(Err(err)) = self.server.await {
            tracing::warn!(error = %err, "the eval server ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_answer_with_its_trail_and_a_failure_with_its_steps() {
        let answered = json!({
            "choices": [{"message": {"role": "assistant", "content": "42"}}],
            "tierwise": {"tier": "cloud", "model": "strong", "attempts": [
                {"kind": "attempt", "step": 0, "tier": "local", "model": "weak", "upstream": "l",
                 "verdict": "escalate", "verify_ms": 3.5, "prompt_tokens": 10, "completion_tokens": 4,
                 "verify_calls": [{"kind": "judge", "tier": "local", "model": "judge", "duration_ms": 2,
                                   "prompt_tokens": 30, "completion_tokens": 2}]},
                {"kind": "skip", "step": 1, "tier": "server", "model": "mid", "upstream": "s", "reason": "missing_key"},
                {"kind": "attempt", "step": 2, "tier": "cloud", "model": "strong", "upstream": "c", "verdict": "accept"}
            ]}
        });
        let reply = read_reply(200, &answered, Duration::from_millis(5));
        assert_eq!(reply.answer.as_deref(), Some("42"));
        assert_eq!((reply.tier.as_deref(), reply.model.as_deref()), (Some("cloud"), Some("strong")));
        assert_eq!(reply.trail.iter().filter(|s| s.called()).count(), 2);
        assert_eq!(reply.trail[0].verify_calls[0].prompt_tokens, Some(30));
        assert_eq!(reply.error, None);

        let failed = json!({"error": {"message": "every step failed", "skipped": [
            {"kind": "attempt", "step": 0, "tier": "local", "model": "weak", "upstream": "l", "verdict": "error"}
        ]}});
        let reply = read_reply(502, &failed, Duration::from_millis(5));
        assert_eq!((reply.answer, reply.error.as_deref()), (None, Some("every step failed")));
        assert_eq!(reply.trail.len(), 1);

        let bare = json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c"}]}}]});
        let reply = read_reply(200, &bare, Duration::ZERO);
        assert_eq!(reply.answer.as_deref(), Some(r#"[{"id":"c"}]"#));
        assert!(reply.error.unwrap().contains("trail.in_body"));
    }
}
