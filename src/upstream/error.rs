//! What went wrong with an upstream call: who failed, and whether the next step should
//! be tried, as fields rather than in the message.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

#[derive(Debug)]
pub struct UpstreamError {
    /// The upstream's config name (never its URL's credentials or its key).
    pub upstream: String,
    pub failure: Failure,
    /// Set when the upstream's protocol says itself whether another attempt may succeed
    /// (Anthropic's error types); otherwise the failure decides, see [`Self::escalates`].
    escalation: Option<bool>,
    /// The upstream's `Retry-After`, when it sent one (seconds form).
    pub retry_after: Option<Duration>,
}

#[derive(Debug)]
pub enum Failure {
    /// Could not connect or send: refused, DNS, TLS, reset before an answer.
    Connect(String),
    /// No answer in time.
    Timeout { phase: TimeoutPhase, after: Duration },
    /// A non-2xx answer, with its body (bounded).
    Status { status: StatusCode, body: Bytes },
    /// A 2xx answer that is not what the protocol says: not JSON, wrong content type,
    /// an empty stream.
    Protocol(String),
    /// The stream broke after its first event reached the client.
    MidStream(String),
    /// The request asks for what this upstream's protocol cannot do (e.g. `n` > 1 from
    /// Anthropic); nothing was sent. Another step may serve it.
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Response headers and first body bytes (`first_byte_timeout_ms`).
    FirstByte,
    /// The whole call (`timeout_ms`).
    Total,
}

impl UpstreamError {
    pub fn new(upstream: &str, failure: Failure) -> Self {
        UpstreamError { upstream: upstream.to_string(), failure, escalation: None, retry_after: None }
    }

    /// Overrides what the failure alone says about escalating: for a protocol whose
    /// errors say whether a retry makes sense (Anthropic's 429 `rate_limit_error`
    /// escalates; its content-filter 400 never does).
    pub fn escalating(mut self, escalates: bool) -> Self {
        self.escalation = Some(escalates);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Whether trying the same upstream again may help: connection errors, 429 and 5xx
    /// (Anthropic's 529 arrives as 503).
    pub fn retryable(&self) -> bool {
        match &self.failure {
            Failure::Connect(_) => true,
            Failure::Status { status, .. } => *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            _ => false,
        }
    }

    /// Whether this failure says the upstream is unhealthy (counts toward opening its
    /// circuit): not reachable, too slow, 5xx, malformed. A 4xx or 429 is not.
    pub fn unhealthy(&self) -> bool {
        match &self.failure {
            Failure::Connect(_) | Failure::Timeout { .. } | Failure::Protocol(_) => true,
            Failure::Status { status, .. } => status.is_server_error(),
            Failure::MidStream(_) | Failure::Unsupported(_) => false,
        }
    }

    /// Whether the run loop should go on to the next step. A 4xx is the request's own
    /// fault and would fail the same way elsewhere, so it goes back to the client —
    /// unless the upstream's protocol classified it otherwise ([`Self::escalating`]).
    pub fn escalates(&self) -> bool {
        if let Some(escalates) = self.escalation {
            return escalates;
        }
        match &self.failure {
            Failure::Connect(_) | Failure::Timeout { .. } | Failure::Protocol(_) | Failure::Unsupported(_) => true,
            // A rate limit is the upstream's state, not the request's fault.
            Failure::Status { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            Failure::MidStream(_) => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, Failure::Timeout { .. })
    }

    /// The upstream's 4xx, if that is what this is.
    pub fn client_status(&self) -> Option<StatusCode> {
        match &self.failure {
            Failure::Status { status, .. } if status.is_client_error() => Some(*status),
            _ => None,
        }
    }

    /// What failed, without the upstream's own words (which may echo the prompt): for an
    /// error status its code, and the error's `type` and `code` when the body has them.
    pub fn summary(&self) -> String {
        match &self.failure {
            Failure::Status { status, body } => {
                let kinds = error_kinds(body);
                if kinds.is_empty() {
                    format!("answered {}", status.as_u16())
                } else {
                    format!("answered {} ({})", status.as_u16(), kinds.join(", "))
                }
            }
            _ => self.short(),
        }
    }

    /// The upstream's own message, for an error status: content, kept out of logs and of
    /// an audit log without content.
    pub fn said(&self) -> Option<String> {
        match &self.failure {
            Failure::Status { body, .. } => Some(body_excerpt(body)).filter(|m| !m.is_empty()),
            _ => None,
        }
    }

    /// A short reason, with the upstream's message.
    pub fn short(&self) -> String {
        match &self.failure {
            Failure::Connect(msg) => format!("unreachable: {msg}"),
            Failure::Timeout { phase: TimeoutPhase::FirstByte, after } => {
                format!("no first byte within {} ms", after.as_millis())
            }
            Failure::Timeout { phase: TimeoutPhase::Total, after } => {
                format!("timed out after {} ms", after.as_millis())
            }
            Failure::Status { status, body } => {
                format!("answered {}: {}", status.as_u16(), body_excerpt(body))
            }
            Failure::Protocol(msg) => format!("bad answer: {msg}"),
            Failure::MidStream(msg) => format!("stream broke: {msg}"),
            Failure::Unsupported(msg) => format!("cannot serve this request: {msg}"),
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream \"{}\" {}", self.upstream, self.short())
    }
}

impl std::error::Error for UpstreamError {}

/// An upstream's client (or its warmth probe's) cannot be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream \"{upstream}\": cannot build its HTTP client: {source}")]
    Client {
        upstream: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("upstream \"{upstream}\": {url} cannot be a base URL")]
    BaseUrl { upstream: String, url: String },
    #[error("upstream \"{upstream}\": the API key is not a valid header value")]
    Key { upstream: String },
}

/// A `Retry-After` in seconds (the HTTP-date form is not honoured).
pub fn retry_after_of(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

/// `type invalid_request_error`, `code context_length_exceeded`: an error body's
/// identifiers, when they look like identifiers (never free text).
fn error_kinds(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let error = value.get("error").filter(|e| e.is_object()).unwrap_or(&value);
    ["type", "code"]
        .into_iter()
        .filter_map(|field| {
            let id = error.get(field)?.as_str()?;
            let plain = !id.is_empty() && id.len() <= 64;
            let plain = plain && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            plain.then(|| format!("{field} {id}"))
        })
        .collect()
}

/// The error message inside an upstream's error body, or its first bytes.
pub fn body_excerpt(body: &[u8]) -> String {
    let parsed = match serde_json::from_slice(body).ok() {
        // Google's endpoints wrap their error object in a one-element array.
        Some(serde_json::Value::Array(mut items)) if items.len() == 1 => items.pop(),
        other => other,
    };
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message").or_else(|| v.get("message")).or_else(|| v.get("error")).and_then(|m| m.as_str())
    });
    match message {
        Some(m) => truncate(m, 300),
        None => truncate(&String::from_utf8_lossy(body), 300),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The innermost cause of a reqwest error, without its URL (which may carry a query key).
/// Whether `err` is a connection closed before any byte of the answer came back:
/// hyper's "connection closed before message completed" — a kept-alive connection the
/// upstream had already closed.
pub fn closed_before_answer(err: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
            return true;
        }
        source = s.source();
    }
    false
}

pub fn describe(err: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    deepest.unwrap_or_else(|| "request failed".to_string())
}
