//! Anthropic's SSE events → OpenAI `chat.completion.chunk` events, one push at a time.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::error::{classify_error_object, ErrorClass};
use super::openai::{Chunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta, Usage};
use super::response::unix_now;
use super::wire::{finish_reason, Block, BlockDelta, Event, StartedMessage};
use crate::upstream::sse::{SseFramer, MAX_EVENT_BYTES};

/// Translates one Messages stream. Feed it the upstream's bytes with [`push`]; it
/// answers with the OpenAI SSE bytes to send on.
///
/// [`push`]: StreamTranslator::push
#[derive(Debug)]
pub struct StreamTranslator {
    include_usage: bool,
    /// One timestamp for every chunk of the stream, as OpenAI does.
    created: u64,
    /// Holds an unterminated last event until the push that completes it.
    framer: SseFramer,
    /// From `message_start`: `None` until it arrives.
    message: Option<StartedMessage>,
    /// OpenAI's `tool_calls[].index` by Anthropic content block index: `tool_use`
    /// blocks counted from 0, skipping text, thinking and server tool blocks.
    tool_index: HashMap<u64, usize>,
    finish_sent: bool,
    finished: bool,
}

/// The stream cannot go on. Send `pending` first, then an error event with
/// [`StreamError::envelope`]; push nothing more.
#[derive(Debug)]
pub struct StreamError {
    /// OpenAI events translated in the same push before the failure.
    pub pending: Bytes,
    pub failure: StreamFailure,
}

#[derive(Debug)]
pub enum StreamFailure {
    /// Anthropic sent an `error` event (e.g. `overloaded_error`), classified as if it
    /// had come with the status its type implies.
    Upstream(ErrorClass),
    /// The bytes are not a Messages stream: an event that is not JSON, a known event
    /// missing its fields, content before `message_start`, or an event over
    /// `MAX_EVENT_BYTES`.
    Protocol(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            StreamFailure::Upstream(class) => {
                let message = class.openai_envelope.pointer("/error/message").and_then(Value::as_str);
                write!(f, "the upstream sent an error event: {}", message.unwrap_or("(no message)"))
            }
            StreamFailure::Protocol(message) => write!(f, "the upstream stream is malformed: {message}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl StreamError {
    /// The OpenAI error envelope to send to the client.
    pub fn envelope(&self) -> Value {
        match &self.failure {
            StreamFailure::Upstream(class) => class.openai_envelope.clone(),
            StreamFailure::Protocol(message) => json!({"error": {
                "message": format!("the upstream stream is malformed: {message}"),
                "type": "server_error", "param": null, "code": "upstream_error",
            }}),
        }
    }

    /// Whether another attempt may succeed (an overloaded or rate-limited upstream).
    /// Only useful if nothing has reached the client yet.
    pub fn retryable(&self) -> bool {
        match &self.failure {
            StreamFailure::Upstream(class) => class.retryable,
            StreamFailure::Protocol(_) => false,
        }
    }
}

impl StreamTranslator {
    /// `include_usage`: the client's `stream_options.include_usage` (see
    /// [`include_usage`](super::include_usage)).
    pub fn new(include_usage: bool) -> Self {
        Self::at(include_usage, unix_now())
    }

    pub(super) fn at(include_usage: bool, created: u64) -> Self {
        StreamTranslator {
            include_usage,
            created,
            framer: SseFramer::default(),
            message: None,
            tool_index: HashMap::new(),
            finish_sent: false,
            finished: false,
        }
    }

    /// Whether `message_stop` was seen. A stream that ended without it was cut.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates whole SSE events (`event: X\ndata: {...}\n\n`; lines may end in CRLF, LF
    /// or a lone CR; an
    /// unterminated last event is kept for the next push). Returns zero or more complete
    /// `data: {chunk}\n\n` events; after `message_stop`, the usage chunk (when asked
    /// for) and `data: [DONE]\n\n`. Anything after `message_stop` is ignored.
    pub fn push(&mut self, events: &[u8]) -> Result<Bytes, StreamError> {
        let mut out = Vec::new();
        let complete = match self.framer.push(events) {
            Ok(Some(complete)) => complete,
            Ok(None) => return Ok(Bytes::new()),
            Err(_) => {
                let failure = StreamFailure::Protocol(format!("an event exceeded {MAX_EVENT_BYTES} bytes"));
                return Err(StreamError { pending: Bytes::new(), failure });
            }
        };

        // `complete` ends with a blank line, so every event in it is dispatched.
        for event in crate::upstream::sse::events(&complete) {
            let Some(data) = event.data else { continue };
            if let Err(failure) = self.event(event.name, &data, &mut out) {
                return Err(StreamError { pending: Bytes::from(out), failure });
            }
        }
        Ok(Bytes::from(out))
    }

    /// Translates one event's data, appending OpenAI events to `out`.
    fn event(&mut self, name: Option<&[u8]>, data: &[u8], out: &mut Vec<u8>) -> Result<(), StreamFailure> {
        if self.finished {
            return Ok(());
        }
        let mut value: Value = serde_json::from_slice(data)
            .map_err(|e| StreamFailure::Protocol(format!("an event's data is not JSON ({e})")))?;
        // `type` is authoritative; the SSE event name stands in only if it is missing.
        if let (Value::Object(fields), Some(name)) = (&mut value, name) {
            if !fields.contains_key("type") {
                fields.insert("type".into(), Value::String(String::from_utf8_lossy(name).into_owned()));
            }
        }
        let event: Event =
            serde_json::from_value(value).map_err(|e| StreamFailure::Protocol(format!("unexpected event ({e})")))?;

        match event {
            Event::MessageStart { message } => {
                self.message = Some(message);
                let delta = Delta { role: Some("assistant"), content: Some(""), ..Delta::default() };
                self.chunk(delta, None, out)
            }
            Event::ContentBlockStart { index, content_block } => match content_block {
                Block::Text { text } if !text.is_empty() => {
                    self.chunk(Delta { content: Some(&text), ..Delta::default() }, None, out)
                }
                Block::ToolUse { id, name, .. } => {
                    let tool = self.tool_index.len();
                    self.tool_index.insert(index, tool);
                    let call = ToolCallDelta {
                        index: tool,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDelta { name: Some(&name), arguments: "" },
                    };
                    self.chunk(Delta { tool_calls: vec![call], ..Delta::default() }, None, out)
                }
                _ => self.started(),
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    self.chunk(Delta { content: Some(&text), ..Delta::default() }, None, out)
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    // Server tool blocks stream their input too; only client tools map.
                    let Some(&tool) = self.tool_index.get(&index) else {
                        return self.started();
                    };
                    let call = ToolCallDelta {
                        index: tool,
                        id: None,
                        kind: None,
                        function: FunctionDelta { name: None, arguments: &partial_json },
                    };
                    self.chunk(Delta { tool_calls: vec![call], ..Delta::default() }, None, out)
                }
                _ => self.started(),
            },
            Event::MessageDelta { delta, usage } => {
                let message = self.message.as_mut().ok_or_else(before_start)?;
                message.usage.update(&usage);
                if self.finish_sent {
                    return Ok(());
                }
                self.finish_sent = true;
                self.chunk(Delta::default(), Some(finish_reason(delta.stop_reason.as_deref())), out)
            }
            Event::MessageStop {} => {
                if !self.finish_sent {
                    // A stream without message_delta still ends in a finish_reason.
                    self.finish_sent = true;
                    self.chunk(Delta::default(), Some("stop"), out)?;
                }
                if self.include_usage {
                    self.usage_chunk(out)?;
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.finished = true;
                Ok(())
            }
            Event::Error { error } => Err(StreamFailure::Upstream(classify_error_object(&error))),
            Event::ContentBlockStop {} | Event::Ping {} | Event::Other => Ok(()),
        }
    }

    /// Content before `message_start` has no id or model to carry: not a Messages stream.
    fn started(&self) -> Result<(), StreamFailure> {
        self.message.as_ref().map(|_| ()).ok_or_else(before_start)
    }

    fn chunk(&self, delta: Delta, finish: Option<&'static str>, out: &mut Vec<u8>) -> Result<(), StreamFailure> {
        let choice = ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish };
        self.write(vec![choice], self.include_usage.then_some(None), out)
    }

    fn usage_chunk(&self, out: &mut Vec<u8>) -> Result<(), StreamFailure> {
        let usage = self.message.as_ref().map(|m| Usage::from(&m.usage));
        self.write(Vec::new(), Some(usage), out)
    }

    /// Appends `data: {chunk}\n\n`.
    fn write(
        &self,
        choices: Vec<ChunkChoice>,
        usage: Option<Option<Usage>>,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamFailure> {
        let message = self.message.as_ref().ok_or_else(before_start)?;
        let chunk = Chunk {
            id: &message.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &message.model,
            choices,
            usage,
        };
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, &chunk)
            .map_err(|e| StreamFailure::Protocol(format!("cannot write a chunk ({e})")))?;
        out.extend_from_slice(b"\n\n");
        Ok(())
    }
}

fn before_start() -> StreamFailure {
    StreamFailure::Protocol("an event came before message_start".into())
}
