//! Privacy, second pass: personal data in any field, in the ordinary variants people
//! write, and in class signals and keys that disagree — each must keep the request on
//! this machine (or refuse it). Counted with planted needles at the doubles.

use serde_json::{json, Value};

use crate::support::*;

/// A failing local step, then a server and a cloud step that would answer: anything
/// not classed sensitive reaches the server.
struct World {
    server: UpstreamDouble,
    cloud: UpstreamDouble,
    app: TestApp,
}

async fn world(extra: &str) -> World {
    let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let server = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = config_for(
        &[
            ("local", "local", &local.base_url()),
            ("lan", "server", &server.base_url()),
            ("vendor", "cloud", &cloud.base_url()),
        ],
        &[("chat", &["local-model", "lan-model", "vendor-model"])],
        extra,
    );
    let app = TestApp::start_with_env(&toml, &[("TEAM_KEY", "tw-team-key"), ("OTHER_KEY", "tw-other-key")]).await;
    World { server, cloud, app }
}

const NEEDLE: &str = "needle.q7x@example.org";

impl World {
    fn saw(&self, needle: &str) -> usize {
        self.server.saw(needle) + self.cloud.saw(needle)
    }

    fn off_machine_calls(&self) -> usize {
        self.server.calls() + self.cloud.calls()
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Each field the detector used not to read, with the needle in it.
fn needle_in_every_field() -> Vec<(&'static str, Value)> {
    let n = NEEDLE;
    let escaped = n.replace('@', "%40");
    let with = |extra: Value| {
        let mut body = json!({"model": "chat", "messages": user("Summarise the attached.")});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    vec![
        ("user", with(json!({"user": n}))),
        ("metadata", with(json!({"metadata": {"customer": n}}))),
        (
            "tool description",
            with(
                json!({"tools": [{"type": "function", "function": {"name": "mail", "description": format!("Mails {n}")}}]}),
            ),
        ),
        (
            "tool enum",
            with(json!({"tools": [{"type": "function", "function": {"name": "mail", "parameters": {"type": "object",
                "properties": {"to": {"type": "string", "enum": [n]}}}}}]})),
        ),
        (
            "response_format",
            with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "r",
                "schema": {"type": "object", "description": format!("Reply for {n}")}}}})),
        ),
        ("message name", json!({"model": "chat", "messages": [{"role": "user", "name": n, "content": "hi"}]})),
        (
            "image_url query",
            json!({"model": "chat", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": format!("https://img.example/a.png?owner={escaped}")}}]}]}),
        ),
        ("stop", with(json!({"stop": [n]}))),
        ("prediction", with(json!({"prediction": {"type": "content", "content": format!("Dear {n},")}}))),
        (
            "refusal",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "refusal": format!("I won't mail {n}")}, {"role": "user", "content": "ok"}]}),
        ),
        (
            "reasoning_content",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "ok", "reasoning_content": format!("the user is {n}")}, {"role": "user", "content": "go on"}]}),
        ),
        (
            "function_call",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "function_call": {"name": "mail", "arguments": format!("{{\"to\": \"{n}\"}}")}}]}),
        ),
        (
            "tool arguments as an object",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "mail", "arguments": {"to": n}}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sent"}]}),
        ),
        (
            "text part that is not a string",
            json!({"model": "chat", "messages": [{"role": "user", "content": [{"type": "text", "text": {"value": n}}]}]}),
        ),
    ]
}

#[tokio::test]
async fn personal_data_in_any_field_stays_on_this_machine() {
    let w = world("").await;
    for (field, body) in needle_in_every_field() {
        let response = w.app.chat(body).await;
        assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive", "{field}");
        assert_eq!(w.off_machine_calls(), 0, "{field} left the machine");
    }
    assert_eq!(w.saw(NEEDLE), 0);
    // The same request without the needle does go up: the test can fail.
    w.app.chat(json!({"model": "chat", "user": "u-42", "messages": user("Summarise the attached.")})).await;
    assert_eq!(w.server.calls(), 1);
}

#[tokio::test]
async fn the_ordinary_variants_count_as_what_they_look_like() {
    let w = world("").await;
    for text in [
        "mail ｎｅｅｄｌｅ＠example.org",                 // fullwidth
        "mail nееdlе@ехаmple.org",                        // Cyrillic е, х, а
        "mail needle\u{200b}@exam\u{00ad}ple.org",        // zero-width space, soft hyphen
        "iban de89 3704 0044 0532 0130 00",               // lower case
        "card ４１１１ １１１１ １１１１ １１１１",       // fullwidth digits
        "Reachable 9-17 +49 30 1234567",                  // after another number
        "room 12 4111 1111 1111 1111",                    // after another number
        "call 030 123 45 67",                             // German grouping
        "call 415 555 0132",                              // North American, spaces
        "card ٤١١١ ١١١١ ١١١١ ١١١١",                       // Arabic-Indic digits
        "see https://x.example/?to=needle%40example.org", // percent-encoded
        "write to needle [at] example [dot] org",         // obfuscated
    ] {
        let response = w.app.chat(json!({"model": "chat", "messages": user(text)})).await;
        assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive", "{text}");
    }
    let split = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "card 4111 1111"}, {"type": "text", "text": "1111 1111"}]}]});
    let response = w.app.chat(split).await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive", "split across text parts");
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn an_image_the_detector_cannot_read_stays_local_unless_the_task_opts_out() {
    let image = json!({"model": "chat", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="}}]}]});
    let w = world("").await;
    let response = w.app.chat(image.clone()).await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert_eq!(w.off_machine_calls(), 0);

    let vision = world("[tasks.chat.detect]\nopaque = \"normal\"\n").await;
    let response = vision.app.chat(image).await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "normal");
    assert_eq!(vision.server.calls(), 1, "opaque = \"normal\": the image may leave");
}

#[tokio::test]
async fn every_class_header_counts_and_the_highest_wins() {
    let w = world("").await;
    let send = |values: &'static [&'static str]| {
        let mut request =
            client().post(w.app.url("/v1/chat/completions")).json(&json!({"model": "chat", "messages": user("hi")}));
        for value in values {
            request = request.header("x-tierwise-content-class", *value);
        }
        request.send()
    };
    let two = send(&["normal", "sensitive"]).await.unwrap();
    assert_eq!(header(&two, "x-tierwise-content-class"), "sensitive");
    let folded = send(&["normal, sensitive"]).await.unwrap();
    assert_eq!(header(&folded, "x-tierwise-content-class"), "sensitive");
    let unknown = send(&["normal", "secret"]).await.unwrap();
    assert_eq!(unknown.status(), 400);
    let error: Value = unknown.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("\"secret\""), "{error}");
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn a_key_written_twice_where_the_class_lives_is_refused() {
    let w = world("").await;
    for body in [
        r#"{"model": "chat", "metadata": {"content_class": "sensitive"}, "metadata": {"content_class": "normal"}, "messages": [{"role": "user", "content": "hi"}]}"#,
        r#"{"model": "chat", "metadata": {"content_class": "sensitive", "content_class": "normal"}, "messages": [{"role": "user", "content": "hi"}]}"#,
    ] {
        let response = client()
            .post(w.app.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("written twice"), "{error}");
    }
    assert_eq!(w.off_machine_calls(), 0);
}

const KEYS: &str = "[auth]\nrequired = false\n[[keys]]\nkey_env = \"TEAM_KEY\"\nprofile = \"default\"\n\
                    [[keys]]\nkey_env = \"OTHER_KEY\"\nprofile = \"default\"\n";

#[tokio::test]
async fn a_presented_key_that_matches_nothing_is_refused_whatever_else_comes_with_it() {
    let w = world(KEYS).await;
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request =
            client().post(w.app.url("/v1/chat/completions")).json(&json!({"model": "chat", "messages": user("hi")}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let wrong_beside_right = send(&[("authorization", "Bearer nope"), ("x-api-key", "tw-team-key")]).await.unwrap();
    assert_eq!(wrong_beside_right.status(), 401);
    let two_valid = send(&[("authorization", "Bearer tw-team-key"), ("x-api-key", "tw-other-key")]).await.unwrap();
    assert_eq!(two_valid.status(), 400);
    assert!(two_valid.text().await.unwrap().contains("Authorization and x-api-key"));
    let same_twice = send(&[("authorization", "Bearer tw-team-key"), ("x-api-key", "tw-team-key")]).await.unwrap();
    assert_eq!(same_twice.status(), 200);
    let none = send(&[]).await.unwrap();
    assert_eq!(none.status(), 200, "auth is not required: no key is the default profile");
}

#[tokio::test]
async fn an_upstream_error_that_echoes_the_prompt_stays_out_of_an_audit_log_without_content() {
    for include_content in [false, true] {
        let dir = std::env::temp_dir().join(format!("tierwise-it-leaks-{include_content}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let audit = dir.join("audit.jsonl");
        let echo = format!(
            r#"{{"error":{{"message":"This model's maximum context length is 8 tokens. Your messages: 'write to {NEEDLE}'","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}}}"#
        );
        let local = UpstreamDouble::start(Behaviour::Status(500, echo.into())).await;
        let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
        let extra = format!("[audit]\npath = \"{}\"\ninclude_content = {include_content}\n", audit.display());
        let toml = config_for(
            &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
            &[("chat", &["local-model", "vendor-model"])],
            &extra,
        );
        let mut app = TestApp::start(&toml).await;
        let response = app.chat(json!({"model": "chat", "messages": user("Say hello.")})).await;
        assert_eq!(response.status(), 200);
        app.begin_shutdown();
        app.server.take().unwrap().await.unwrap().unwrap();
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&audit).unwrap().lines().next().unwrap()).unwrap();
        let message = line["attempts"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("answered 500 (type invalid_request_error, code context_length_exceeded)"),
            "{message}"
        );
        assert_eq!(message.contains(NEEDLE), include_content, "include_content = {include_content}: {message}");
    }
}
