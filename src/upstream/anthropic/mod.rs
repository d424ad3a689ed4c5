//! Anthropic's Messages API (`POST /v1/messages`) spoken through the OpenAI chat
//! completion protocol. Pure translation over bytes and JSON, no I/O:
//!
//! - [`to_messages_request`]  — OpenAI chat request → Messages request body.
//! - [`from_messages_response`] — Messages response → `chat.completion` body.
//! - [`StreamTranslator`]     — Messages SSE → `chat.completion.chunk` SSE, event by event.
//! - [`classify_error`]       — an Anthropic error answer → status, OpenAI envelope, and
//!   whether a retry or another tier makes sense.
//!
//! The caller (`upstream::messages`) sends the body to `{base_url}/messages` (`base_url`
//! includes `/v1`, e.g. `https://api.anthropic.com/v1`) with the headers `x-api-key`,
//! `anthropic-version: 2023-06-01` and `content-type: application/json`.

mod content;
mod error;
mod openai;
mod request;
mod response;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use error::{classify_error, is_provider_block, ErrorClass, ErrorKind, TranslateError};
pub use request::{include_usage, to_messages_request};
pub use response::from_messages_response;
pub use stream::{StreamError, StreamFailure, StreamTranslator};

/// The version of the Messages API this module speaks, for the `anthropic-version` header.
pub const API_VERSION: &str = "2023-06-01";

/// How requests are translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `max_tokens` sent when the request has neither `max_completion_tokens` nor
    /// `max_tokens`; the Messages API requires one.
    pub default_max_tokens: u32,
}
