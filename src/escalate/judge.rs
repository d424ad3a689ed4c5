//! The LLM judge: asks a model (through the same upstream machinery) whether an answer is
//! good enough, for a JSON verdict `{"accept": bool, "feedback": "..."}`. Anything else —
//! prose without a verdict, a timeout, an upstream error — means escalate.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use super::score::logprobs;
use crate::openai::{ChatRequest, Content, Role};
use crate::upstream::usage::{self, Usage};
use crate::upstream::{Busy, Endpoint, Reply, Upstream, UpstreamError};

/// The built-in prompt of `judge_score = "yes_no"`: one token, Yes or No.
pub const YES_NO_PROMPT: &str = "You review answers written by an AI assistant. Decide whether the ANSWER fully and \
correctly responds to the USER's last message while following the SYSTEM instructions.\n\n\
SYSTEM:\n{system}\n\nUSER:\n{user}\n\nANSWER:\n{answer}\n\n\
Is the ANSWER correct? Reply with Yes or No only.";

/// The built-in judge prompt. `{system}`, `{user}` and `{answer}` are replaced.
pub const DEFAULT_PROMPT: &str = "You review answers written by an AI assistant. Decide whether the ANSWER fully and \
correctly responds to the USER's last message while following the SYSTEM instructions.\n\n\
SYSTEM:\n{system}\n\nUSER:\n{user}\n\nANSWER:\n{answer}\n\n\
Reply with one JSON object and nothing else: {\"accept\": true or false, \"feedback\": \"if not accepted: what is \
wrong and how to fix it, in one or two sentences\"}";

/// What the judge said of an answer (not the trail's [`super::Verdict`] on an attempt).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ruling {
    pub accept: bool,
    #[serde(default)]
    pub feedback: String,
    /// The judge's own score (0–1), when its JSON has one.
    #[serde(default, deserialize_with = "score")]
    pub score: Option<f64>,
}

/// A score the judge wrote: a number, clamped to [0, 1]; anything else is no score.
fn score<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.and_then(|v| v.as_f64()).filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0)))
}

/// Why the judge's ruling is unknown: the answer escalates.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("the judge's upstream is {0}")]
    Busy(Busy),
    #[error("the judge failed: {0}")]
    Failed(UpstreamError),
    #[error("the judge did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("the judge streamed an answer")]
    Streamed,
    #[error("the judge's answer is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("no verdict in the judge's answer: {0:?}")]
    NoVerdict(String),
    #[error("unusable verdict: {0}")]
    Unusable(serde_json::Error),
}

/// The judge prompt for `request` and `answer`.
pub fn render(template: &str, request: &ChatRequest, answer: &str) -> String {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .filter_map(|m| text_of(m.content.as_ref()))
        .collect();
    let user = request.messages.iter().rev().find(|m| m.role == Role::User).and_then(|m| text_of(m.content.as_ref()));
    let system = if system.is_empty() { "(none)".to_string() } else { system.join("\n") };
    fill(template, &[("{system}", &system), ("{user}", user.unwrap_or("(none)")), ("{answer}", answer)])
}

/// `template` with each placeholder replaced, in one pass: text already put in (a user
/// message that says `{answer}`) is never replaced again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        match values.iter().find(|(placeholder, _)| rest.starts_with(placeholder)) {
            Some((placeholder, value)) => {
                out.push_str(value);
                rest = &rest[placeholder.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn text_of(content: Option<&Content>) -> Option<&str> {
    match content? {
        Content::Text(text) => Some(text),
        Content::Parts(parts) => parts.iter().rev().find_map(|p| p.get("text")?.as_str()),
    }
}

/// The most a JSON verdict may take (a yes/no one takes 1).
pub const MAX_TOKENS: u64 = 256;

/// Asks `model` on `upstream` for its ruling; also what the call used, when it answered.
pub async fn ask(
    upstream: &Upstream,
    model: &str,
    prompt: String,
    timeout: Duration,
) -> (Result<Ruling, JudgeError>, Option<Usage>) {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "response_format": {"type": "json_object"},
    });
    let span = crate::telemetry::call_span(upstream, model, "judge");
    let completion = match call(upstream, Bytes::from(body.to_string()), timeout).instrument(span.clone()).await {
        Ok(completion) => completion,
        Err(err) => {
            // Without the upstream's own words, which may echo the prompt.
            let kind = match &err {
                JudgeError::Failed(failure) => failure.summary(),
                other => other.to_string(),
            };
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
            return (Err(err), None);
        }
    };
    crate::telemetry::record_completion(&span, &completion);
    let text = completion.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default();
    let ruling = parse_verdict(text);
    if let Ok(ruling) = &ruling {
        span.record("tierwise.verdict", if ruling.accept { "accept" } else { "reject" });
    }
    (ruling, usage::of_completion(&completion))
}

/// One call to the judge, within `timeout`: the completion it answered.
async fn call(upstream: &Upstream, body: Bytes, timeout: Duration) -> Result<Value, JudgeError> {
    let call = async {
        if let Some(reply) = upstream.replayed(Endpoint::Chat, &body, false).await {
            return Ok(reply);
        }
        let slot = upstream.reserve(None).await.map_err(JudgeError::Busy)?;
        upstream.chat(&slot, body, false).await.map_err(JudgeError::Failed)
    };
    let reply = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(JudgeError::TimedOut(timeout)),
        Ok(result) => result?,
    };
    let Reply::Json(bytes) = reply else { return Err(JudgeError::Streamed) };
    serde_json::from_slice(&bytes).map_err(JudgeError::NotJson)
}

/// Asks `model` on `upstream` for a one-token Yes or No (`judge_score = "yes_no"`); the
/// probability of Yes among the verdict token's alternatives is the score.
pub async fn ask_yes_no(
    upstream: &Upstream,
    model: &str,
    prompt: String,
    timeout: Duration,
) -> (Result<f64, JudgeError>, Option<Usage>) {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": true,
        "top_logprobs": 10,
    });
    let completion = match call(upstream, Bytes::from(body.to_string()), timeout).await {
        Ok(completion) => completion,
        Err(err) => return (Err(err), None),
    };
    let score = logprobs::verdict_probability(completion.pointer("/choices/0")).map_err(JudgeError::NoVerdict);
    (score, usage::of_completion(&completion))
}

/// The first JSON object with a boolean `accept` in `text`, tolerating code fences and
/// prose around it.
pub fn parse_verdict(text: &str) -> Result<Ruling, JudgeError> {
    for (start, _) in text.match_indices('{') {
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value)) = stream.next() {
            if value.get("accept").is_some_and(Value::is_boolean) {
                return serde_json::from_value(value).map_err(JudgeError::Unusable);
            }
        }
    }
    Err(JudgeError::NoVerdict(text.chars().take(120).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_verdict_in_fences_and_prose() {
        let v = parse_verdict("Sure!\n```json\n{\"accept\": false, \"feedback\": \"Name the capital.\"}\n```").unwrap();
        assert_eq!(v, Ruling { accept: false, feedback: "Name the capital.".into(), score: None });
        let v = parse_verdict("{\"accept\": true, \"score\": 1.7}").unwrap();
        assert_eq!(v.score, Some(1.0), "a score is clamped to [0, 1]");
        assert_eq!(parse_verdict("{\"accept\": true, \"score\": \"high\"}").unwrap().score, None);
        let v = parse_verdict("{\"note\": {\"x\": 1}} then {\"accept\": true}").unwrap();
        assert!(v.accept && v.feedback.is_empty());
    }

    #[test]
    fn no_verdict_is_an_error() {
        assert!(parse_verdict("Looks good to me.").unwrap_err().to_string().starts_with("no verdict"));
        assert!(parse_verdict("{\"accept\": \"yes\"}").is_err());
        assert!(parse_verdict("{\"accept\": tru").is_err());
    }

    #[test]
    fn text_put_in_is_never_filled_again() {
        let request: ChatRequest = serde_json::from_value(json!({"messages": [
            {"role": "system", "content": "Reply with {user} and {answer} literally."},
            {"role": "user", "content": "What does {answer} mean in a template?"}
        ]}))
        .unwrap();
        let prompt = render(DEFAULT_PROMPT, &request, "It is a placeholder: {system}.");
        assert!(prompt.contains("SYSTEM:\nReply with {user} and {answer} literally."), "{prompt}");
        assert!(prompt.contains("USER:\nWhat does {answer} mean in a template?"), "{prompt}");
        assert!(prompt.contains("ANSWER:\nIt is a placeholder: {system}."), "{prompt}");
        assert_eq!(fill("{a}{b} {c", &[("{a}", "{b}"), ("{b}", "x")]), "{b}x {c");
    }

    #[test]
    fn the_prompt_holds_system_user_and_answer() {
        let request: ChatRequest = serde_json::from_value(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}
        ]}))
        .unwrap();
        let prompt = render(DEFAULT_PROMPT, &request, "Paris.");
        assert!(prompt.contains("SYSTEM:\nBe brief.") && prompt.contains("USER:\nCapital of France?"));
        assert!(prompt.contains("ANSWER:\nParis."));
    }
}
