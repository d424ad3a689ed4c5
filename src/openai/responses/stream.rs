//! A chat completion stream as the Responses stream the official SDKs consume:
//! `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta` … `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done` (or, for a function call,
//! `response.function_call_arguments.delta` … `.done`), and `response.completed` with
//! usage. An error event in the chat stream becomes an `error` event; SSE comments (the
//! keep-alives, the `: tierwise {...}` trailer) pass through as they are.

use bytes::Bytes;
use serde_json::{json, Value};

use super::response::{function_call_item, message_item};
use super::{response_id, usage, Echo};
use crate::upstream::sse;

/// Translates one response's chat stream, event by event.
pub struct Translator {
    echo: Echo,
    sequence: u64,
    head: Option<Head>,
    message: Option<Text>,
    /// Function calls by their chat tool-call index.
    calls: Vec<Option<Call>>,
    next_output: usize,
    finish: Option<String>,
    usage: Option<Value>,
    completed: bool,
}

struct Head {
    id: String,
    created: Value,
    model: Value,
}

struct Text {
    item_id: String,
    output_index: usize,
    text: String,
}

struct Call {
    item_id: String,
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

impl Translator {
    pub fn new(echo: Echo) -> Self {
        Translator {
            echo,
            sequence: 0,
            head: None,
            message: None,
            calls: Vec::new(),
            next_output: 0,
            finish: None,
            usage: None,
            completed: false,
        }
    }

    /// The Responses events for a piece of the chat stream (whole events).
    pub fn feed(&mut self, chat: &[u8]) -> Bytes {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(chat).replace("\r\n", "\n");
        for block in text.split_inclusive("\n\n") {
            if block.lines().all(|l| l.is_empty() || l.starts_with(':')) {
                out.extend_from_slice(block.as_bytes());
                continue;
            }
            for event in sse::events(block.as_bytes()) {
                if event.is_done() {
                    self.complete(&mut out);
                    continue;
                }
                let Some(data) = event.data.as_deref() else { continue };
                match serde_json::from_slice::<Value>(data) {
                    Ok(chunk) => self.chunk(&chunk, &mut out),
                    Err(err) => self.error("upstream_error", &format!("a stream event is not JSON: {err}"), &mut out),
                }
            }
        }
        Bytes::from(out)
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut fields: Value) {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {fields}\n\n").as_bytes());
    }

    fn snapshot(&self, status: &str) -> Value {
        let head = self.head.as_ref();
        let id = head.map_or_else(|| "resp_tierwise".to_string(), |h| h.id.clone());
        let created = head.map_or(json!(0), |h| h.created.clone());
        let model = head.map_or(Value::Null, |h| h.model.clone());
        let mut output: Vec<(usize, Value)> = Vec::new();
        if let Some(m) = &self.message {
            output.push((m.output_index, message_item(&m.item_id, &m.text, status_of_item(status))));
        }
        for call in self.calls.iter().flatten() {
            let chat = json!({"id": call.call_id, "function": {"name": call.name, "arguments": call.arguments}});
            output.push((call.output_index, function_call_item(&chat, status_of_item(status))));
        }
        output.sort_by_key(|(i, _)| *i);
        let output = if status == "in_progress" { Vec::new() } else { output.into_iter().map(|(_, v)| v).collect() };
        let usage = if status == "in_progress" { Value::Null } else { usage(self.usage.as_ref()) };
        self.echo.response(&id, created, model, status, output, usage)
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.head.is_some() {
            return;
        }
        self.head = Some(Head {
            id: response_id(chunk.get("id").and_then(Value::as_str).unwrap_or("tierwise")),
            created: chunk.get("created").cloned().unwrap_or(json!(0)),
            model: chunk.get("model").cloned().unwrap_or(Value::Null),
        });
        let response = self.snapshot("in_progress");
        self.emit(out, "response.created", json!({"response": response}));
        let response = self.snapshot("in_progress");
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if let Some(error) = chunk.get("error") {
            let code = error.get("code").and_then(Value::as_str).unwrap_or("upstream_error").to_string();
            let message = error.get("message").and_then(Value::as_str).unwrap_or("the stream failed").to_string();
            return self.error(&code, &message, out);
        }
        self.start(chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.call(call, out);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
            }
        }
    }

    fn text(&mut self, delta: &str, out: &mut Vec<u8>) {
        if self.message.is_none() {
            let id = self.head.as_ref().map_or("tierwise", |h| h.id.trim_start_matches("resp_"));
            let text = Text { item_id: format!("msg_{id}"), output_index: self.next_output, text: String::new() };
            self.next_output += 1;
            let item = json!({"type": "message", "id": text.item_id, "status": "in_progress", "role": "assistant", "content": []});
            let (item_id, output_index) = (text.item_id.clone(), text.output_index);
            self.message = Some(text);
            self.emit(out, "response.output_item.added", json!({"output_index": output_index, "item": item}));
            let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": part}),
            );
        }
        let Some(message) = self.message.as_mut() else { return };
        message.text.push_str(delta);
        let (item_id, output_index) = (message.item_id.clone(), message.output_index);
        self.emit(
            out,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": output_index,
            "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }

    fn call(&mut self, delta: &Value, out: &mut Vec<u8>) {
        let index = usize::try_from(delta.get("index").and_then(Value::as_u64).unwrap_or(0)).unwrap_or(0);
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, || None);
        }
        if self.calls[index].is_none() {
            let call_id = delta.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = delta.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let call = Call {
                item_id: format!("fc_{call_id}"),
                output_index: self.next_output,
                call_id,
                name,
                arguments: String::new(),
            };
            self.next_output += 1;
            let item = json!({"type": "function_call", "id": call.item_id, "call_id": call.call_id, "name": call.name,
                "arguments": "", "status": "in_progress"});
            let output_index = call.output_index;
            self.calls[index] = Some(call);
            self.emit(out, "response.output_item.added", json!({"output_index": output_index, "item": item}));
        }
        let Some(call) = self.calls[index].as_mut() else { return };
        if let Some(piece) = delta.pointer("/function/arguments").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            call.arguments.push_str(piece);
            let (item_id, output_index) = (call.item_id.clone(), call.output_index);
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": output_index, "delta": piece}),
            );
        }
    }

    /// Closes every item, then `response.completed` (once).
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.completed {
            return;
        }
        self.completed = true;
        if self.head.is_none() {
            self.start(&Value::Null, out);
        }
        let status = if self.finish.as_deref() == Some("length") { "incomplete" } else { "completed" };
        if let Some(m) = &self.message {
            let (item_id, output_index, text) = (m.item_id.clone(), m.output_index, m.text.clone());
            self.emit(out, "response.output_text.done", json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}));
            let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
            self.emit(
                out,
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": part}),
            );
            let item = message_item(&item_id, &text, status_of_item(status));
            self.emit(out, "response.output_item.done", json!({"output_index": output_index, "item": item}));
        }
        let calls: Vec<(String, usize, String, String, String)> = self
            .calls
            .iter()
            .flatten()
            .map(|c| (c.item_id.clone(), c.output_index, c.call_id.clone(), c.name.clone(), c.arguments.clone()))
            .collect();
        for (item_id, output_index, call_id, name, arguments) in calls {
            self.emit(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": output_index, "name": name, "arguments": arguments}),
            );
            let chat = json!({"id": call_id, "function": {"name": name, "arguments": arguments}});
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": output_index, "item": function_call_item(&chat, "completed")}),
            );
        }
        let response = self.snapshot(status);
        let kind = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(out, kind, json!({"response": response}));
    }

    fn error(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.completed {
            return;
        }
        self.completed = true;
        self.emit(out, "error", json!({"code": code, "message": message, "param": null}));
    }
}

fn status_of_item(response_status: &str) -> &'static str {
    match response_status {
        "in_progress" => "in_progress",
        "incomplete" => "incomplete",
        _ => "completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events' types and data, in order.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.split("\n\n")
            .filter(|b| b.starts_with("event: "))
            .map(|b| {
                let mut lines = b.lines();
                let kind = lines.next().unwrap().trim_start_matches("event: ").to_string();
                let data: Value = serde_json::from_str(lines.next().unwrap().trim_start_matches("data: ")).unwrap();
                assert_eq!(data["type"], kind);
                (kind, data)
            })
            .collect()
    }

    #[test]
    fn a_recorded_llama_server_stream_becomes_the_events_the_sdk_reads() {
        let chat =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama_server/logprobs_stream.sse"))
                .unwrap();
        let mut translator = Translator::new(Echo::default());
        // Fed in two pieces, split between events, as a passed-through stream arrives.
        let text = String::from_utf8(chat).unwrap();
        let cut = text.match_indices("\n\n").nth(2).unwrap().0 + 2;
        let mut out = translator.feed(&text.as_bytes()[..cut]).to_vec();
        out.extend_from_slice(&translator.feed(&text.as_bytes()[cut..]));
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            &kinds[..4],
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
        );
        assert_eq!(
            &kinds[kinds.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let deltas: String = events
            .iter()
            .filter(|(k, _)| k == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "The answer is 4.");
        let numbers: Vec<u64> = events.iter().map(|(_, d)| d["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(completed["output"][0]["content"][0]["text"], "The answer is 4.");
        assert_eq!(completed["usage"]["output_tokens"], 7);
        assert!(completed["id"].as_str().unwrap().starts_with("resp_"));
    }

    #[test]
    fn tool_calls_comments_and_errors() {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-x", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let stream = [
            ": keep-alive\n\n".to_string(),
            chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            ": tierwise {\"tier\":\"local\"}\n\n".to_string(),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let out = Translator::new(Echo::default()).feed(stream.as_bytes());
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with(": keep-alive\n\n") && text.contains(": tierwise {\"tier\":\"local\"}\n\n"), "{text}");
        let called = events(&out);
        let done = called.iter().find(|(k, _)| k == "response.function_call_arguments.done").unwrap();
        assert_eq!(done.1["arguments"], "{\"city\":\"Oslo\"}");
        let completed = &called.last().unwrap().1["response"];
        assert_eq!(
            completed["output"],
            json!([{"type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "weather",
            "arguments": "{\"city\":\"Oslo\"}", "status": "completed"}])
        );

        let broken = format!(
            "{}data: {}\n\n",
            chunk(json!({"content": "Hi"}), Value::Null),
            json!({"error": {"message": "the upstream broke off", "type": "server_error", "code": "upstream_stream_broken"}})
        );
        let failed = events(&Translator::new(Echo::default()).feed(broken.as_bytes()));
        let (kind, error) = failed.last().unwrap();
        assert_eq!((kind.as_str(), error["code"].as_str()), ("error", Some("upstream_stream_broken")));
    }
}
