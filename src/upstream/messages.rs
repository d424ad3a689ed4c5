//! Calling a `kind = "anthropic"` upstream: the OpenAI request is translated to a
//! Messages request ([`anthropic::to_messages_request`]), POSTed to
//! `{base_url}/messages`, and the answer, stream or error translated back, so that the
//! run loop and the client only ever see OpenAI's shapes.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::anthropic::{self, ErrorClass, TranslateError};
use super::stream::Decoder;
use super::{Failure, Reply, Upstream, UpstreamError};

/// One chat completion through the Messages API. `body` is the OpenAI request tierwise
/// would send an OpenAI upstream (model already rewritten).
pub(super) async fn chat(upstream: &Upstream, body: Bytes, stream: bool) -> Result<Reply, UpstreamError> {
    let openai: Value = serde_json::from_slice(&body)
        .map_err(|e| upstream.fail(Failure::Protocol(format!("cannot read the request to translate it ({e})"))))?;
    let options = anthropic::Options { default_max_tokens: upstream.config.max_tokens_default };
    let request = anthropic::to_messages_request(&openai, &options).map_err(|e| untranslatable(upstream.name(), e))?;
    let request = serde_json::to_vec(&request)
        .map_err(|e| upstream.fail(Failure::Protocol(format!("cannot write the Messages request ({e})"))))?;

    let response = upstream.send(Bytes::from(request)).await?;
    let status = response.status();
    if status.is_redirection() {
        let failure =
            format!("answered {status}, a redirect, which tierwise does not follow: set base_url to the final address");
        return Err(upstream.fail(Failure::Protocol(failure)));
    }
    if !status.is_success() {
        let retry_after = super::error::retry_after_of(response.headers());
        let body = upstream.read_body(response).await.unwrap_or_default();
        return Err(classified(upstream.name(), &anthropic::classify_error(status.as_u16(), &body))
            .with_retry_after(retry_after));
    }
    if !stream {
        let body = upstream.read_body(response).await?;
        return anthropic::from_messages_response(&body)
            .map(Reply::Json)
            .map_err(|e| upstream.fail(Failure::Protocol(e.to_string())));
    }
    upstream.start_stream(response, Decoder::anthropic(anthropic::include_usage(&openai))).await
}

/// An Anthropic error (an answer's status and body, or a stream's `error` event) as the
/// client would get it: the translated status and OpenAI envelope in a
/// [`Failure::Status`]. Overloaded, rate-limited and server errors go on to the next
/// step; everything else — a provider's content block included — goes back to the
/// client and is never retried elsewhere.
pub(super) fn classified(upstream: &str, class: &ErrorClass) -> UpstreamError {
    let status = StatusCode::from_u16(class.status_for_client).unwrap_or(StatusCode::BAD_GATEWAY);
    let escalates = !class.provider_block && (class.retryable || status.is_server_error());
    let body = Bytes::from(class.openai_envelope.to_string());
    UpstreamError::new(upstream, Failure::Status { status, body }).escalating(escalates)
}

/// A request the Messages API cannot take. Invalid → a 400 naming the field (the client
/// must fix it); unsupported (`n` > 1, `logprobs`) → skip this step, another tier may
/// serve it. Nothing was sent.
fn untranslatable(upstream: &str, err: TranslateError) -> UpstreamError {
    match err {
        TranslateError::Invalid { message, param } => {
            let envelope =
                json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
            let failure = Failure::Status { status: StatusCode::BAD_REQUEST, body: Bytes::from(envelope.to_string()) };
            UpstreamError::new(upstream, failure).escalating(false)
        }
        TranslateError::Unsupported { message, param } => {
            UpstreamError::new(upstream, Failure::Unsupported(format!("{message} (`{param}`)")))
        }
        TranslateError::Response(message) => UpstreamError::new(upstream, Failure::Protocol(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_errors_escalate_only_when_another_attempt_may_succeed() {
        let cases: [(u16, &[u8], u16, bool); 6] = [
            (529, br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, 503, true),
            (429, br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#, 429, true),
            (500, br#"{"type":"error","error":{"type":"api_error","message":"oops"}}"#, 500, true),
            (400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#, 400, false),
            (
                400,
                br#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}"#,
                400,
                false,
            ),
            (401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#, 401, false),
        ];
        for (status, body, client_status, escalates) in cases {
            let err = classified("claude", &anthropic::classify_error(status, body));
            assert_eq!(err.escalates(), escalates, "{status}");
            let Failure::Status { status: got, body } = &err.failure else { panic!("{status}: {err:?}") };
            assert_eq!(got.as_u16(), client_status);
            let envelope: Value = serde_json::from_slice(body).unwrap();
            assert!(envelope["error"]["message"].is_string(), "{envelope}");
        }
    }

    #[test]
    fn invalid_requests_are_a_400_naming_the_field_and_unsupported_ones_escalate() {
        let invalid = untranslatable(
            "claude",
            TranslateError::Invalid { message: "`stop` must be a string".into(), param: Some("stop".into()) },
        );
        assert!(!invalid.escalates());
        let Failure::Status { status, body } = &invalid.failure else { panic!("{invalid:?}") };
        assert_eq!(*status, StatusCode::BAD_REQUEST);
        let envelope: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(envelope["error"]["param"], "stop");

        let unsupported = untranslatable(
            "claude",
            TranslateError::Unsupported { message: "`n` must be 1".into(), param: "n".into() },
        );
        assert!(unsupported.escalates());
        assert!(unsupported.short().contains("`n` must be 1"), "{}", unsupported.short());
    }
}
