//! Buffers a streamed answer into the `chat.completion` it amounts to, so it can be
//! verified before any of it reaches the client (and replayed if accepted).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};

use crate::upstream::{sse, Failure, UpstreamError};

/// What the stream said, choice by choice.
#[derive(Default)]
struct Assembly {
    head: Map<String, Value>,
    /// Per choice index: content, role, finish reason, tool calls (by index).
    choices: Vec<ChoiceParts>,
    usage: Option<Value>,
}

#[derive(Default)]
struct ChoiceParts {
    role: Option<Value>,
    content: String,
    saw_content: bool,
    finish_reason: Option<Value>,
    tool_calls: Vec<Map<String, Value>>,
    /// Token log-probabilities (`logprobs.content` entries), when the stream had them.
    logprobs: Option<Vec<Value>>,
}

/// A problem with the stream itself (not its transport).
#[derive(Debug)]
pub enum AssembleError {
    Upstream(UpstreamError),
    /// An event was not a chunk, or the stream carried an error event.
    Bad(String),
}

/// Reads the whole stream (`first` and `rest`) and returns the completion it amounts to.
pub async fn assemble(
    first: Bytes,
    mut rest: impl Stream<Item = Result<Bytes, UpstreamError>> + Unpin,
) -> Result<Value, AssembleError> {
    let mut assembly = Assembly::default();
    assembly.feed(&first)?;
    while let Some(events) = rest.next().await {
        assembly.feed(&events.map_err(|err| AssembleError::Upstream(unsent(err)))?)?;
    }
    Ok(assembly.finish())
}

/// The completion that SSE `events`, all collected, amount to.
pub fn assemble_events(events: &[u8]) -> Result<Value, AssembleError> {
    let mut assembly = Assembly::default();
    assembly.feed(events)?;
    Ok(assembly.finish())
}

/// A buffered stream that broke has reached no client: unlike a passed-through one, the
/// next step may still answer, so its break escalates.
fn unsent(err: UpstreamError) -> UpstreamError {
    match err.failure {
        Failure::MidStream(_) => err.escalating(true),
        _ => err,
    }
}

impl Assembly {
    fn feed(&mut self, events: &[u8]) -> Result<(), AssembleError> {
        for event in sse::events(events) {
            let Some(data) = event.data.as_deref().filter(|_| !event.is_done()) else { continue };
            let chunk: Value =
                serde_json::from_slice(data).map_err(|e| AssembleError::Bad(format!("an event is not JSON: {e}")))?;
            if let Some(error) = chunk.get("error") {
                let message = error.get("message").and_then(Value::as_str).unwrap_or("error event");
                return Err(AssembleError::Bad(format!("the stream carried an error: {message}")));
            }
            self.chunk(chunk);
        }
        Ok(())
    }

    fn chunk(&mut self, chunk: Value) {
        let Value::Object(mut chunk) = chunk else { return };
        if let Some(usage) = chunk.remove("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage);
        }
        let choices = chunk.remove("choices");
        if self.head.is_empty() {
            self.head = chunk;
        }
        for choice in choices.as_ref().and_then(Value::as_array).into_iter().flatten() {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, ChoiceParts::default);
            }
            let parts = &mut self.choices[index];
            if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                parts.finish_reason = Some(reason.clone());
            }
            if let Some(tokens) = choice.pointer("/logprobs/content").and_then(Value::as_array) {
                parts.logprobs.get_or_insert_with(Vec::new).extend(tokens.iter().cloned());
            }
            let Some(delta) = choice.get("delta") else { continue };
            if let Some(role) = delta.get("role").filter(|r| !r.is_null()) {
                parts.role = Some(role.clone());
            }
            if let Some(content) = delta.get("content").and_then(Value::as_str) {
                parts.content.push_str(content);
                parts.saw_content = true;
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if parts.tool_calls.len() <= i {
                    parts.tool_calls.resize_with(i + 1, Map::new);
                }
                merge_tool_call(&mut parts.tool_calls[i], call);
            }
        }
    }

    fn finish(self) -> Value {
        let mut completion = self.head;
        completion.insert("object".into(), json!("chat.completion"));
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, parts)| {
                let mut message = json!({"role": parts.role.unwrap_or(json!("assistant")), "content": Value::Null});
                if parts.saw_content || parts.tool_calls.is_empty() {
                    message["content"] = json!(parts.content);
                }
                if !parts.tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(parts.tool_calls.into_iter().map(Value::Object).collect());
                }
                let logprobs = parts.logprobs.map_or(Value::Null, |tokens| json!({"content": tokens}));
                json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": parts.finish_reason})
            })
            .collect();
        completion.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            completion.insert("usage".into(), usage);
        }
        Value::Object(completion)
    }
}

/// Tool-call deltas: `id`, `type` and `function.name` arrive once, `function.arguments`
/// in pieces.
fn merge_tool_call(call: &mut Map<String, Value>, delta: &Value) {
    for key in ["id", "type"] {
        if let Some(v) = delta.get(key).filter(|v| !v.is_null()) {
            call.insert(key.into(), v.clone());
        }
    }
    let function = call.entry("function").or_insert_with(|| json!({"name": "", "arguments": ""}));
    if let Some(name) = delta.pointer("/function/name").and_then(Value::as_str) {
        function["name"] = json!(name);
    }
    if let Some(piece) = delta.pointer("/function/arguments").and_then(Value::as_str) {
        let so_far = function["arguments"].as_str().unwrap_or_default().to_string();
        function["arguments"] = json!(so_far + piece);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    async fn from_fixture(path: &str) -> Value {
        let body = std::fs::read(path).unwrap();
        assemble(Bytes::from(body), stream::empty()).await.unwrap()
    }

    #[tokio::test]
    async fn assembles_text_and_usage() {
        let c = from_fixture(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai/chat_stream_usage.sse")).await;
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["id"], "chatcmpl-123");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello! How can I help you today?");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["total_tokens"], 18);
    }

    /// llama-server's stream of SmolLM2's "The answer is 4." with logprobs
    /// (tests/fixtures/llama_server/logprobs_stream.sse) assembles to the same tokens and
    /// log-probabilities as its JSON answer to the same request — but for the empty
    /// end-of-text token, which llama-server lists in JSON only.
    #[tokio::test]
    async fn keeps_the_token_logprobs_of_a_recorded_stream() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama_server/");
        let c = from_fixture(&format!("{dir}logprobs_stream.sse")).await;
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}logprobs.json")).unwrap()).unwrap();
        assert_eq!(c["choices"][0]["message"]["content"], json["choices"][0]["message"]["content"]);
        let tokens = |v: &Value| -> Vec<(String, f64)> {
            v["choices"][0]["logprobs"]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["token"].as_str().unwrap().to_string(), t["logprob"].as_f64().unwrap()))
                .collect()
        };
        let mut from_json = tokens(&json);
        assert_eq!(from_json.pop().map(|t| t.0), Some(String::new()));
        assert_eq!(tokens(&c), from_json);
        assert!(from_fixture(&format!("{}/tests/fixtures/openai/chat_stream_usage.sse", env!("CARGO_MANIFEST_DIR")))
            .await["choices"][0]["logprobs"]
            .is_null());
    }

    #[tokio::test]
    async fn assembles_tool_calls_from_deltas() {
        let events = [
            json!({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ];
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let c = assemble(Bytes::from(body), stream::empty()).await.unwrap();
        let call = &c["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert!(c["choices"][0]["message"]["content"].is_null());
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    }

    #[tokio::test]
    async fn a_buffered_stream_that_breaks_escalates() {
        let first = Bytes::from("data: {\"id\": \"c\", \"choices\": []}\n\n");
        let broken = UpstreamError::new("local", Failure::MidStream("connection reset".into()));
        assert!(!broken.escalates(), "passed through, a broken stream cannot escalate");
        let Err(AssembleError::Upstream(err)) = assemble(first, stream::iter([Err(broken)])).await else {
            panic!("a broken stream is an upstream error")
        };
        assert!(err.escalates(), "buffered, nothing reached the client: the next step may answer");
    }

    #[tokio::test]
    async fn reads_an_event_whose_data_spans_several_lines() {
        let body = "data: {\"id\": \"c\", \"choices\": [{\"index\": 0,\ndata: \"delta\": {\"content\": \"hi\"}}]}\r\n\r\ndata: [DONE]\n\n";
        let c = assemble(Bytes::from(body), stream::empty()).await.unwrap();
        assert_eq!(c["choices"][0]["message"]["content"], "hi");
    }

    #[tokio::test]
    async fn an_error_event_is_an_error() {
        let body = Bytes::from("data: {\"error\": {\"message\": \"overloaded\"}}\n\n");
        assert!(
            matches!(assemble(body, stream::empty()).await, Err(AssembleError::Bad(m)) if m.contains("overloaded"))
        );
    }
}
