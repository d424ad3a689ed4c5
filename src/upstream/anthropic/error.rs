//! What can go wrong in translation, and what an Anthropic error answer means for
//! tierwise: the status and OpenAI envelope the client gets, and whether to retry.

use serde_json::{json, Value};

use crate::upstream::body_excerpt;

/// Why a request or answer could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The OpenAI request is malformed; `param` names the field at fault, e.g.
    /// `messages[2].tool_calls[0].function.arguments`. The client's fault: a 400.
    #[error("{message}")]
    Invalid { message: String, param: Option<String> },
    /// A valid OpenAI request asking for what the Messages API cannot do (`n` > 1,
    /// `logprobs`). Another tier may still serve it.
    #[error("{message}")]
    Unsupported { message: String, param: String },
    /// The upstream's 2xx answer is not a Messages response. The upstream's fault.
    #[error("not an Anthropic message: {0}")]
    Response(String),
}

impl TranslateError {
    pub(super) fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        TranslateError::Invalid { message: message.into(), param: Some(param.into()) }
    }

    pub(super) fn unsupported(message: impl Into<String>, param: impl Into<String>) -> Self {
        TranslateError::Unsupported { message: message.into(), param: param.into() }
    }

    /// The request field at fault, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            TranslateError::Invalid { param, .. } => param.as_deref(),
            TranslateError::Unsupported { param, .. } => Some(param),
            TranslateError::Response(_) => None,
        }
    }
}

/// Anthropic's error types (`error.type`), each with the HTTP status it comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400 `invalid_request_error`, also used for other 4xx.
    InvalidRequest,
    /// 401 `authentication_error`: tierwise's key for this upstream is wrong.
    Authentication,
    /// 402 `billing_error`.
    Billing,
    /// 403 `permission_error`.
    Permission,
    /// 404 `not_found_error`, usually an unknown `model`.
    NotFound,
    /// 413 `request_too_large`.
    RequestTooLarge,
    /// 429 `rate_limit_error`.
    RateLimit,
    /// 500 `api_error`.
    Api,
    /// 504 `timeout_error`.
    Timeout,
    /// 529 `overloaded_error`.
    Overloaded,
    /// A type this module does not know (or none, e.g. an OpenAI-shaped body from a
    /// compatible server); the status decides.
    Unknown,
}

impl ErrorKind {
    fn from_type(kind: &str) -> Option<Self> {
        Some(match kind {
            "invalid_request_error" => ErrorKind::InvalidRequest,
            "authentication_error" => ErrorKind::Authentication,
            "billing_error" => ErrorKind::Billing,
            "permission_error" => ErrorKind::Permission,
            "not_found_error" => ErrorKind::NotFound,
            "request_too_large" => ErrorKind::RequestTooLarge,
            "rate_limit_error" => ErrorKind::RateLimit,
            "api_error" => ErrorKind::Api,
            "timeout_error" => ErrorKind::Timeout,
            "overloaded_error" => ErrorKind::Overloaded,
            _ => return None,
        })
    }

    /// The status Anthropic sends this type with; used for `error` events, which have none.
    fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Billing => 402,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Api | ErrorKind::Unknown => 500,
            ErrorKind::Timeout => 504,
            ErrorKind::Overloaded => 529,
        }
    }
}

/// What tierwise should do with an Anthropic error.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorClass {
    pub kind: ErrorKind,
    /// The status to answer the client with: Anthropic's own, except 529 → 503 (a
    /// status OpenAI clients know) and a non-error status → 502.
    pub status_for_client: u16,
    /// `{"error": {"message", "type", "param": null, "code"}}`. `code` is OpenAI's code
    /// where one applies (`invalid_api_key`, `rate_limit_exceeded`,
    /// `context_length_exceeded`, `content_filter`, `model_not_found`), else Anthropic's
    /// error type, so operators still see it.
    pub openai_envelope: Value,
    /// A later attempt may succeed: 429, 5xx, 529, or an overloaded/rate-limit/API/
    /// timeout error type.
    pub retryable: bool,
    /// Anthropic refused the content itself (see [`is_provider_block`]); another tier,
    /// e.g. a local model, may still answer.
    pub provider_block: bool,
}

/// Classifies an Anthropic error answer. Tolerates any body: a non-JSON one (e.g. a
/// proxy's HTML page) is classified by its status alone.
pub fn classify_error(status: u16, body: &[u8]) -> ErrorClass {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let kind_name = parsed.as_ref().and_then(|v| v.pointer("/error/type")).and_then(Value::as_str);
    classify(status, kind_name, &body_excerpt(body))
}

/// Classifies the `error` object of a mid-stream `error` event, whose status is implied
/// by its type.
pub(super) fn classify_error_object(error: &Value) -> ErrorClass {
    let kind_name = error.get("type").and_then(Value::as_str);
    let kind = kind_name.and_then(ErrorKind::from_type).unwrap_or(ErrorKind::Unknown);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("the upstream stream failed");
    classify(kind.status(), kind_name, message)
}

fn classify(status: u16, kind_name: Option<&str>, message: &str) -> ErrorClass {
    let kind = kind_name.and_then(ErrorKind::from_type).unwrap_or_else(|| kind_from_status(status));
    let provider_block = (400..500).contains(&status)
        && matches!(kind, ErrorKind::InvalidRequest | ErrorKind::Unknown)
        && is_provider_block(message);
    let status_for_client = match status {
        529 => 503,
        400..=599 => status,
        _ => 502,
    };
    let retryable = status == 429
        || status >= 500
        || matches!(kind, ErrorKind::RateLimit | ErrorKind::Api | ErrorKind::Timeout | ErrorKind::Overloaded);

    let openai_type = match kind {
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Billing => "insufficient_quota",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Api | ErrorKind::Overloaded => "server_error",
        _ if status_for_client >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    let code = if provider_block {
        Some("content_filter")
    } else if is_context_overflow(kind_name, message) {
        Some("context_length_exceeded")
    } else {
        match kind {
            ErrorKind::Authentication => Some("invalid_api_key"),
            ErrorKind::RateLimit => Some("rate_limit_exceeded"),
            ErrorKind::Billing => Some("insufficient_quota"),
            ErrorKind::NotFound if message.starts_with("model:") => Some("model_not_found"),
            _ => kind_name,
        }
    };
    ErrorClass {
        kind,
        status_for_client,
        openai_envelope: json!({"error": {"message": message, "type": openai_type, "param": null, "code": code}}),
        retryable,
        provider_block,
    }
}

fn kind_from_status(status: u16) -> ErrorKind {
    match status {
        400 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        402 => ErrorKind::Billing,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::RequestTooLarge,
        429 => ErrorKind::RateLimit,
        500 => ErrorKind::Api,
        504 => ErrorKind::Timeout,
        529 => ErrorKind::Overloaded,
        _ => ErrorKind::Unknown,
    }
}

/// Whether an `invalid_request_error` message says Anthropic refused the content itself.
/// Anthropic has no dedicated type or code for this; its content filter answers 400
/// `invalid_request_error` "Output blocked by content filtering policy", so the rule
/// matches that phrase and the usage-policy wordings, case-insensitively.
pub fn is_provider_block(message: &str) -> bool {
    const MARKERS: [&str; 5] =
        ["content filtering policy", "usage policy", "usage policies", "output blocked", "request blocked"];
    let message = message.to_lowercase();
    MARKERS.iter().any(|m| message.contains(m))
}

/// Anthropic says "prompt is too long: N tokens > M maximum"; llama-server's
/// Anthropic endpoint uses the type `exceed_context_size_error`.
fn is_context_overflow(kind_name: Option<&str>, message: &str) -> bool {
    kind_name == Some("exceed_context_size_error") || message.to_lowercase().contains("prompt is too long")
}
