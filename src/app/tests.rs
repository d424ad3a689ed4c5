//! Handler tests without a socket: `build_router(state)` driven by `oneshot`, for what is
//! pure HTTP behaviour — routing, the error envelope, auth, body parsing. The request's
//! path through upstreams is tested end to end in `tests/it`.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{build_router, AppState};

const CONFIG: &str = r#"
    [upstreams.local]
    tier = "local"
    base_url = "http://127.0.0.1:9/v1"
    [models.small]
    upstream = "local"
    [tasks.chat]
    chain = ["small"]
    [auth]
    required = true
    [[keys]]
    key_env = "USER_KEY"
    profile = "default"
    [[keys]]
    key_env = "ADMIN_KEY"
    profile = "default"
    admin = true
"#;

fn state() -> AppState {
    let env = |name: &str| match name {
        "USER_KEY" => Some("user-key".to_string()),
        "ADMIN_KEY" => Some("admin-key".to_string()),
        _ => None,
    };
    AppState::new(crate::config::load_from_str(CONFIG, &env).unwrap()).unwrap()
}

/// Sends one request through the router; the status and the body as JSON.
async fn send(request: Request<Body>) -> (StatusCode, Value) {
    let response = build_router(state()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn post(path: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_envelope() {
    let (status, body) = send(Request::get("/v1/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "unknown_url"));
    let (status, body) = send(Request::get("/v1/chat/completions").body(Body::empty()).unwrap()).await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn health_answers_without_a_key() {
    let (status, body) = send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_a_401_whatever_the_body() {
    let (status, body) = send(post("/v1/chat/completions", None, "{not json")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_api_key"));
    let (status, body) = send(post("/v1/chat/completions", Some("nope"), "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("Authorization"), "{body}");
    let (status, _) = send(Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_body_is_a_400_naming_what_is_wrong() {
    let (status, body) = send(post("/v1/chat/completions", Some("user-key"), "{\"messages\": [}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1 column"), "{body}");
    let twice = r#"{"model": "chat", "model": "chat", "messages": []}"#;
    let (status, body) = send(post("/v1/chat/completions", Some("user-key"), twice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("written twice"), "{body}");
    let unknown = r#"{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, body) = send(post("/v1/chat/completions", Some("user-key"), unknown)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "model_not_found"));
    assert!(body["error"]["message"].as_str().unwrap().contains("chat, small"), "{body}");
}

#[tokio::test]
async fn the_models_list_and_admin_endpoints_know_who_is_calling() {
    let list = Request::get("/v1/models").header("x-api-key", "user-key").body(Body::empty()).unwrap();
    let (status, body) = send(list).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["chat", "small"]);
    let (status, body) = send(post("/v1/tierwise/reload", Some("user-key"), "")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "admin_only"));
    let other = r#"{"model": "chat", "profile": "default", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, body) = send(post("/v1/tierwise/explain", Some("admin-key"), other)).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("answers")));
}
