//! A Messages response → an OpenAI `chat.completion` body.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::openai::{AssistantMessage, Completion, CompletionChoice, FunctionCall, ToolCall, Usage};
use super::wire::{finish_reason, Block, MessageResponse};
use super::TranslateError;

/// Translates a 2xx `/v1/messages` body into `chat.completion` JSON: `text` blocks are
/// concatenated into `content` (`null` if there are none), `tool_use` blocks become
/// `tool_calls` with their `input` as compact JSON `arguments`, and thinking and other
/// blocks are dropped. `created` is the current time.
pub fn from_messages_response(body: &[u8]) -> Result<Bytes, TranslateError> {
    from_messages_response_at(body, unix_now())
}

pub(super) fn from_messages_response_at(body: &[u8], created: u64) -> Result<Bytes, TranslateError> {
    let answer: MessageResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::Response(format!("unreadable body ({e})")))?;
    if let Some(kind) = answer.kind.as_deref().filter(|&k| k != "message") {
        return Err(TranslateError::Response(format!("its type is \"{kind}\"")));
    }

    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in answer.content {
        match block {
            Block::Text { text: piece } => text.get_or_insert_with(String::new).push_str(&piece),
            Block::ToolUse { id, name, input } => {
                let arguments = if input.is_null() { "{}".to_string() } else { input.to_string() };
                tool_calls.push(ToolCall { id, kind: "function", function: FunctionCall { name, arguments } });
            }
            Block::Other => {}
        }
    }

    let completion = Completion {
        id: &answer.id,
        object: "chat.completion",
        created,
        model: &answer.model,
        choices: [CompletionChoice {
            index: 0,
            message: AssistantMessage { role: "assistant", content: text, tool_calls },
            logprobs: None,
            finish_reason: finish_reason(answer.stop_reason.as_deref()),
        }],
        usage: Usage::from(&answer.usage),
    };
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(|e| TranslateError::Response(format!("cannot write the completion ({e})")))
}

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
