use serde_json::json;

use super::fixture;
use crate::upstream::anthropic::{classify_error, is_provider_block, ErrorKind};

#[test]
fn classifies_every_documented_error() {
    use ErrorKind::*;
    #[rustfmt::skip]
    let table = [
        // body                                         status kind       client  OpenAI type              code                       retry  block
        (fixture!("error_400_invalid_request.json"),     400, InvalidRequest,  400, "invalid_request_error", "invalid_request_error",   false, false),
        (fixture!("error_400_prompt_too_long.json"),     400, InvalidRequest,  400, "invalid_request_error", "context_length_exceeded", false, false),
        (fixture!("error_400_content_filtering.json"),   400, InvalidRequest,  400, "invalid_request_error", "content_filter",          false, true),
        (fixture!("error_401_authentication.json"),      401, Authentication,  401, "invalid_request_error", "invalid_api_key",         false, false),
        (fixture!("error_403_permission.json"),          403, Permission,      403, "invalid_request_error", "permission_error",        false, false),
        (fixture!("error_404_not_found.json"),           404, NotFound,        404, "invalid_request_error", "model_not_found",         false, false),
        (fixture!("error_413_request_too_large.json"),   413, RequestTooLarge, 413, "invalid_request_error", "request_too_large",       false, false),
        (fixture!("error_429_rate_limit.json"),          429, RateLimit,       429, "rate_limit_error",      "rate_limit_exceeded",     true,  false),
        (fixture!("error_500_api.json"),                 500, Api,             500, "server_error",          "api_error",               true,  false),
        (fixture!("error_529_overloaded.json"),          529, Overloaded,      503, "server_error",          "overloaded_error",        true,  false),
        // llama-server's /v1/messages answers errors in OpenAI's shape.
        (fixture!("llama_server_error_400_context.json"), 400, InvalidRequest, 400, "invalid_request_error", "context_length_exceeded", false, false),
        (fixture!("llama_server_error_500.json"),        500, Api,             500, "server_error",          "server_error",            true,  false),
    ];
    for (body, status, kind, client_status, openai_type, code, retryable, provider_block) in table {
        let class = classify_error(status, body);
        let name = std::str::from_utf8(body).unwrap();
        assert_eq!(class.kind, kind, "{name}");
        assert_eq!(class.status_for_client, client_status, "{name}");
        assert_eq!(class.openai_envelope["error"]["type"], openai_type, "{name}");
        assert_eq!(class.openai_envelope["error"]["code"], code, "{name}");
        assert_eq!(class.retryable, retryable, "{name}");
        assert_eq!(class.provider_block, provider_block, "{name}");
    }
}

#[test]
fn writes_the_openai_envelope_with_anthropics_message() {
    let class = classify_error(529, fixture!("error_529_overloaded.json"));
    assert_eq!(
        class.openai_envelope,
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
    );
    let class = classify_error(404, fixture!("error_404_not_found.json"));
    assert_eq!(class.openai_envelope["error"]["message"], "model: claude-nonexistent-1");
}

#[test]
fn classifies_a_body_that_is_not_anthropics_by_status() {
    let class = classify_error(529, b"<html>overloaded</html>");
    assert_eq!((class.kind, class.status_for_client, class.retryable), (ErrorKind::Overloaded, 503, true));
    assert_eq!(class.openai_envelope["error"]["message"], "<html>overloaded</html>");

    let class = classify_error(502, b"");
    assert_eq!((class.kind, class.status_for_client, class.retryable), (ErrorKind::Unknown, 502, true));
    assert_eq!(class.openai_envelope["error"]["type"], "server_error");

    let class = classify_error(418, b"{}");
    assert_eq!((class.kind, class.status_for_client, class.retryable), (ErrorKind::Unknown, 418, false));

    let class = classify_error(200, b"{}");
    assert_eq!(class.status_for_client, 502);
}

#[test]
fn finds_provider_blocks_by_their_wording_only() {
    for blocked in [
        "Output blocked by content filtering policy",
        "This request violates our Usage Policy.",
        "Request blocked: it may violate Anthropic's usage policies",
    ] {
        assert!(is_provider_block(blocked), "{blocked}");
    }
    for other in
        ["messages: text content blocks must be non-empty", "prompt is too long: 208310 tokens > 200000 maximum"]
    {
        assert!(!is_provider_block(other), "{other}");
    }
    // The wording alone is not enough on a non-4xx answer.
    let body =
        br#"{"type":"error","error":{"type":"api_error","message":"Output blocked by content filtering policy"}}"#;
    assert!(!classify_error(500, body).provider_block);
}
