//! A JSON body extractor that answers in the OpenAI error envelope: malformed JSON with
//! its line and column, wrong types naming the field, wrong content type, too large.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `server.body_read_timeout_ms`, put in the request's extensions by the edge: how long
/// a client may take to send a body (slow-client protection).
#[derive(Clone, Copy, Debug)]
pub struct BodyReadTimeout(pub std::time::Duration);

/// `Json<T>`, but every rejection is an [`ApiError`].
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType { got: content_type.to_string() });
        }
        let limit = req.extensions().get::<BodyReadTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match limit {
            Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| ApiError::BodyTimeout(limit))?,
            None => read.await,
        };
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::invalid(format!("could not read the request body: {}", rejection.body_text()), None)
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses `bytes`, naming the offending field (`messages[0].content`) on a type error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        describe(err.into_inner(), &path)
    })?;
    de.end().map_err(|err| describe(err, "."))?;
    Ok(value)
}

fn describe(err: serde_json::Error, path: &str) -> ApiError {
    if err.classify() != serde_json::error::Category::Data {
        return ApiError::invalid(format!("the body is not valid JSON: {err}"), None);
    }
    let message = err.to_string();
    let param = missing_field(&message)
        .map(|field| if path == "." { field.to_string() } else { format!("{path}.{field}") })
        .or_else(|| (path != ".").then(|| path.to_string()));
    match param {
        Some(p) => ApiError::invalid(format!("invalid request: `{p}`: {message}"), Some(p)),
        None => ApiError::invalid(format!("invalid request: {message}"), None),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatRequest;

    fn param_and_message(body: &str) -> (Option<String>, String) {
        match parse::<ChatRequest>(body.as_bytes()) {
            Err(ApiError::InvalidRequest { message, param, .. }) => (param, message),
            other => panic!("expected an invalid request, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn names_the_line_and_column_of_bad_json() {
        let (param, message) = param_and_message("{\"messages\": [\n  {\"role\": \"user\",}\n]}");
        assert_eq!(param, None);
        assert!(message.contains("line 2 column"), "{message}");
    }

    #[test]
    fn names_the_field_of_a_wrong_type() {
        let (param, message) = param_and_message(r#"{"model":"m","messages":[{"role":"user","content":7}]}"#);
        assert_eq!(param.as_deref(), Some("messages[0].content"));
        assert!(message.contains("messages[0].content"), "{message}");
    }

    #[test]
    fn names_a_missing_field() {
        let (param, _) = param_and_message(r#"{"model":"m"}"#);
        assert_eq!(param.as_deref(), Some("messages"));
        let (param, _) = param_and_message(r#"{"model":"m","messages":[{"content":"hi"}]}"#);
        assert_eq!(param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn rejects_trailing_garbage() {
        let (_, message) = param_and_message(r#"{"messages":[]} x"#);
        assert!(message.contains("not valid JSON"), "{message}");
    }

    #[test]
    fn accepts_json_with_parameters() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
