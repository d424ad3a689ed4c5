//! Every error a client can get, as one type with one status mapping and one writer of
//! the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::upstream::{Failure, UpstreamError};

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; `param` names the field when one is at fault.
    InvalidRequest { message: String, param: Option<String> },
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType { got: String },
    /// 401: `auth.required` and no (known) client key.
    Unauthorized(String),
    /// 403: policy forbids the request (`tier_too_low`, `privacy_blocked`, admin only).
    Forbidden { code: &'static str, message: String },
    /// 413: the body exceeds `server.body_limit_bytes`.
    PayloadTooLarge,
    /// 404: `model` names neither a task nor a model alias.
    ModelNotFound { name: String, known: Vec<String> },
    /// 404: no such endpoint.
    UnknownUrl { method: String, path: String },
    /// 405: the endpoint exists, the method does not.
    MethodNotAllowed { method: String, path: String },
    /// 504: the request exceeded `server.request_timeout_ms`.
    RequestTimeout(Duration),
    /// 408: the client did not send its body within `server.body_read_timeout_ms`.
    BodyTimeout(Duration),
    /// An upstream's own 4xx, passed on with its status and message.
    Rejected(Box<UpstreamRejection>),
    /// 502/503/504: no step produced an answer. `message` lists every step;
    /// `skipped` has the same, machine-readable.
    Exhausted {
        status: StatusCode,
        code: &'static str,
        message: String,
        skipped: Option<Value>,
        /// When a step that was skipped for now (busy, circuit open) may run again.
        retry_after: Option<Duration>,
    },
    /// 429/503 with `Retry-After`: rate limited upstream, or tierwise is at capacity.
    Overloaded { status: StatusCode, code: &'static str, message: String, retry_after: Option<Duration> },
    /// 500: a bug in tierwise (e.g. a caught panic).
    Internal(String),
}

/// An upstream's 4xx (it rejected the request itself) as tierwise passes it on.
#[derive(Debug)]
pub struct UpstreamRejection {
    pub status: StatusCode,
    pub upstream: String,
    pub message: String,
    pub kind: Option<String>,
    pub param: Option<Value>,
    pub code: Option<Value>,
    /// The upstream's `Retry-After` (a 429's), sent on to the client.
    pub retry_after: Option<HeaderValue>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<Value>,
    code: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'a Value>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError::InvalidRequest { message: message.into(), param }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::ModelNotFound { .. } | ApiError::UnknownUrl { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Rejected(r) => r.status,
            ApiError::Exhausted { status, .. } | ApiError::Overloaded { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// From an upstream's 4xx: keeps its status, type, param and code; prefixes its
    /// message with the upstream's name and removes `key` from it.
    pub fn rejected(err: &UpstreamError, key: Option<&str>) -> Self {
        let Failure::Status { status, body } = &err.failure else {
            return ApiError::Exhausted {
                status: StatusCode::BAD_GATEWAY,
                code: "upstream_error",
                message: err.to_string(),
                skipped: None,
                retry_after: None,
            };
        };
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let inner = parsed.as_ref().and_then(|v| v.get("error")).filter(|e| e.is_object());
        let field = |name: &str| inner.and_then(|e| e.get(name)).filter(|v| !v.is_null()).cloned();
        let mut message = crate::upstream::body_excerpt(body);
        if let Some(key) = key.filter(|k| k.len() >= 8) {
            message = message.replace(key, "[redacted]");
        }
        ApiError::Rejected(Box::new(UpstreamRejection {
            status: *status,
            upstream: err.upstream.clone(),
            message,
            kind: field("type").and_then(|t| t.as_str().map(str::to_string)),
            param: field("param"),
            code: field("code"),
            // Whole seconds, rounded up.
            retry_after: err
                .retry_after
                .map(|d| HeaderValue::from((d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))),
        }))
    }

    fn kind(&self) -> &str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::UnsupportedMediaType { .. }
            | ApiError::PayloadTooLarge
            | ApiError::ModelNotFound { .. }
            | ApiError::UnknownUrl { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::Unauthorized(_) => "invalid_request_error",
            ApiError::Forbidden { .. } => "permission_error",
            ApiError::RequestTimeout(_) | ApiError::BodyTimeout(_) => "timeout_error",
            ApiError::Rejected(r) => r.kind.as_deref().unwrap_or("invalid_request_error"),
            // Over a spend budget (`budget_exceeded`): the SDKs' rate-limit error.
            ApiError::Exhausted { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            ApiError::Exhausted { .. } => "upstream_error",
            ApiError::Overloaded { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            ApiError::Overloaded { .. } => "overloaded_error",
            ApiError::Internal(_) => "server_error",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::UnsupportedMediaType { got } => {
                let got = if got.is_empty() { "none".to_string() } else { format!("\"{got}\"") };
                format!("Content-Type must be application/json (got {got})")
            }
            ApiError::Unauthorized(message) => message.clone(),
            ApiError::Forbidden { message, .. } => message.clone(),
            ApiError::PayloadTooLarge => {
                "the request body is larger than this server accepts (server.body_limit_bytes)".into()
            }
            ApiError::ModelNotFound { name, known } => format!(
                "The model `{name}` does not exist: it is neither a tierwise task nor a model alias. Known: {}",
                if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
            ),
            ApiError::UnknownUrl { method, path } => format!("Unknown request URL: {method} {path}."),
            ApiError::MethodNotAllowed { method, path } => format!("Method {method} is not allowed on {path}."),
            ApiError::RequestTimeout(after) => {
                format!("the request did not complete within {} ms (server.request_timeout_ms)", after.as_millis())
            }
            ApiError::BodyTimeout(after) => {
                format!("the request body did not arrive within {} ms (server.body_read_timeout_ms)", after.as_millis())
            }
            ApiError::Rejected(r) => format!("upstream \"{}\": {}", r.upstream, r.message),
            ApiError::Exhausted { message, .. } | ApiError::Overloaded { message, .. } => message.clone(),
            ApiError::Internal(message) => message.clone(),
        }
    }

    fn param(&self) -> Option<Value> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.clone().map(Value::String),
            ApiError::ModelNotFound { .. } => Some(Value::String("model".into())),
            ApiError::Rejected(r) => r.param.clone(),
            _ => None,
        }
    }

    fn code(&self) -> Option<Value> {
        let code = match self {
            ApiError::InvalidRequest { .. } => return None,
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::PayloadTooLarge => "request_too_large",
            ApiError::Unauthorized(_) => "invalid_api_key",
            ApiError::Forbidden { code, .. } => code,
            ApiError::ModelNotFound { .. } => "model_not_found",
            ApiError::UnknownUrl { .. } => "unknown_url",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::BodyTimeout(_) => "request_body_timeout",
            ApiError::Rejected(r) => return r.code.clone(),
            ApiError::Exhausted { code, .. } | ApiError::Overloaded { code, .. } => code,
            ApiError::Internal(_) => "internal_error",
        };
        Some(Value::String(code.into()))
    }

    /// The error code as text, for logs and the audit log.
    pub fn code_str(&self) -> Option<String> {
        self.code().map(|c| match c {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// The envelope as bytes (also used for SSE error events).
    pub fn envelope(&self) -> Bytes {
        let message = self.message();
        let skipped = match self {
            ApiError::Exhausted { skipped, .. } => skipped.as_ref(),
            _ => None,
        };
        let envelope = Envelope {
            error: Body { message: &message, kind: self.kind(), param: self.param(), code: self.code(), skipped },
        };
        // Serializing strings and JSON values cannot fail.
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.envelope()).into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ApiError::Overloaded { retry_after: Some(after), .. }
        | ApiError::Exhausted { retry_after: Some(after), .. } = &self
        {
            // Whole seconds, rounded up: a client must not come back too early.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let Some(retry_after) = match &self {
            ApiError::Rejected(refusal) => refusal.retry_after.clone(),
            _ => None,
        } {
            response.headers_mut().insert(RETRY_AFTER, retry_after);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamError;

    fn json(err: &ApiError) -> Value {
        serde_json::from_slice(&err.envelope()).unwrap()
    }

    #[test]
    fn writes_the_openai_envelope() {
        let err = ApiError::ModelNotFound { name: "gpt-9".into(), known: vec!["chat".into(), "smollm2".into()] };
        let body = json(&err);
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert!(body["error"]["message"].as_str().unwrap().contains("chat, smollm2"));
    }

    #[test]
    fn passes_an_upstream_refusal_on_without_its_key() {
        let upstream_body = r#"{"error":{"message":"Incorrect API key provided: sk-secret-123456.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let err = UpstreamError::new(
            "openai",
            Failure::Status { status: StatusCode::UNAUTHORIZED, body: Bytes::from(upstream_body) },
        );
        let api = ApiError::rejected(&err, Some("sk-secret-123456"));
        let body = json(&api);
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("upstream \"openai\": Incorrect API key"), "{message}");
        assert!(!message.contains("sk-secret"), "{message}");
    }

    #[test]
    fn a_passed_on_429_keeps_the_upstreams_retry_after() {
        let body =
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let err =
            UpstreamError::new("openai", Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, body: body.into() })
                .with_retry_after(Some(Duration::from_secs(20)));
        let response = ApiError::rejected(&err, None).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "20");
        let without =
            UpstreamError::new("openai", Failure::Status { status: StatusCode::BAD_REQUEST, body: body.into() });
        assert!(ApiError::rejected(&without, None).into_response().headers().get(RETRY_AFTER).is_none());
    }
}
