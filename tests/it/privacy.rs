//! The tier policy end to end: what reached which upstream double, for every rule.

use serde_json::{json, Value};

use crate::support::*;

/// local (500s unless `local_ok`), server and cloud doubles; tasks over them.
struct World {
    local: UpstreamDouble,
    server: UpstreamDouble,
    cloud: UpstreamDouble,
    app: TestApp,
}

async fn world(local_ok: bool, extra: &str) -> World {
    let local = if local_ok {
        UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await
    } else {
        UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await
    };
    let server = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = format!(
        r#"
        [upstreams.laptop]
        tier = "local"
        base_url = "{}"
        circuit_failures = 0
        [upstreams.lan]
        tier = "server"
        base_url = "{}"
        [upstreams.vendor]
        tier = "cloud"
        base_url = "{}"
        [models]
        small = {{ upstream = "laptop" }}
        mid = {{ upstream = "lan" }}
        big = {{ upstream = "vendor" }}
        [tasks.chat]
        chain = ["small", "mid", "big"]
        [tasks.companion]
        chain = ["small", "big"]
        rules = {{ reply = "I can't answer right now." }}
        [tasks.diary]
        chain = ["small", "big"]
        content_class = "sensitive"
        [tasks.pro]
        chain = ["mid", "big"]
        min_tier = "cloud"
        {extra}
        "#,
        local.base_url(),
        server.base_url(),
        cloud.base_url()
    );
    let app = TestApp::start_with_env(&toml, &[("TEAM_KEY", "tw-team-key"), ("ADMIN_KEY", "tw-admin-key")]).await;
    World { local, server, cloud, app }
}

const CONSENT: &str = "[profiles.default]\ncloud_consent = true\n";

fn with_text(task: &str, text: &str, stream: bool) -> Value {
    json!({"model": task, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

impl World {
    fn off_machine_calls(&self) -> usize {
        self.server.calls() + self.cloud.calls()
    }
}

#[tokio::test]
async fn detected_pii_never_leaves_the_machine_json_or_stream() {
    let w = world(false, CONSENT).await;
    for stream in [false, true] {
        for text in [
            "Email anna@example.org about the invoice",
            "My IBAN is DE89 3704 0044 0532 0130 00",
            "Card: 4111 1111 1111 1111",
            "Ring me on +49 170 1234567",
        ] {
            let response = w.app.chat(with_text("chat", text, stream)).await;
            assert_eq!(response.status(), 502, "{text}: the local step failed and nothing else may run");
            assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
            let attempts = header(&response, "x-tierwise-attempts").to_string();
            assert!(
                attempts.contains("server/mid:skip(privacy)") && attempts.contains("cloud/big:skip(privacy)"),
                "{attempts}"
            );
            let body: Value = response.json().await.unwrap();
            assert!(body["error"]["message"].as_str().unwrap().contains("sensitive"), "{body}");
        }
    }
    assert_eq!(w.local.calls(), 8);
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn pii_in_parts_and_tool_arguments_is_found_too() {
    let w = world(false, CONSENT).await;
    let parts = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello"}, {"type": "text", "text": "bob@example.com"}]}]});
    let tools = json!({"model": "chat", "messages": [
        {"role": "user", "content": "pay it"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "pay", "arguments": "{\"iban\": \"GB82WEST12345698765432\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}]});
    for body in [parts, tools] {
        let response = w.app.chat(body).await;
        assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    }
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn plain_text_goes_up_the_chain() {
    let w = world(false, CONSENT).await;
    let response = w
        .app
        .chat(with_text("chat", "What is the capital of France? Around 1999 it had 2.1 million people.", false))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-content-class"), "normal");
    assert_eq!(header(&response, "x-tierwise-tier"), "server");
    assert_eq!((w.local.calls(), w.server.calls(), w.cloud.calls()), (1, 1, 0));
}

#[tokio::test]
async fn a_request_can_raise_the_class_but_never_lower_it() {
    let w = world(true, CONSENT).await;
    // The header raises it.
    let response = client()
        .post(w.app.url("/v1/chat/completions"))
        .header("x-tierwise-content-class", "sensitive")
        .json(&with_text("pro", "nothing special", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "pro has no local step");
    // The body field raises it, and is not forwarded.
    let body = json!({"model": "chat", "metadata": {"content_class": "sensitive", "user_ref": "42"},
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = w.app.chat(body).await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert_eq!(w.local.received()[0].body["metadata"], json!({"user_ref": "42"}));
    let body = json!({"model": "chat", "metadata": {"content_class": "sensitive"}, "messages": [{"role": "user", "content": "hi"}]});
    w.app.chat(body).await;
    assert!(w.local.received()[1].body.get("metadata").is_none(), "an emptied metadata is dropped");
    // Neither can lower a sensitive task.
    let response = client()
        .post(w.app.url("/v1/chat/completions"))
        .header("x-tierwise-content-class", "normal")
        .json(&json!({"model": "diary", "metadata": {"content_class": "normal"}, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn an_unknown_class_is_a_400_not_normal() {
    let w = world(true, CONSENT).await;
    let response = client()
        .post(w.app.url("/v1/chat/completions"))
        .header("x-tierwise-content-class", "secret")
        .json(&with_text("chat", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "x-tierwise-content-class");
    let response = w
        .app
        .chat(
            json!({"model": "chat", "metadata": {"content_class": 1}, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(w.local.calls(), 0);
}

#[tokio::test]
async fn no_consent_explains_itself_in_english_and_german() {
    let w = world(false, "[profiles.default]\nallowed_tiers = [\"local\", \"cloud\"]\n").await;
    let response = w.app.chat(with_text("chat", "hello", false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("- server (mid): this tier is not in allowed_tiers of profile \"default\""), "{message}");
    assert!(
        message.contains("- cloud (big): cloud consent missing — set cloud_consent = true in profile \"default\""),
        "{message}"
    );
    let skipped: Vec<&str> =
        body["error"]["skipped"].as_array().unwrap().iter().map(|s| s["reason"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["runtime_error", "not_allowed", "no_consent"]);

    let response = client()
        .post(w.app.url("/v1/chat/completions"))
        .header("accept-language", "de-DE,de;q=0.9,en;q=0.5")
        .json(&with_text("chat", "hallo", false))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("keine Stufe konnte Task \"chat\" beantworten:"), "{message}");
    assert!(
        message.contains("cloud (big): Cloud-Einwilligung fehlt — setze cloud_consent = true im Profil \"default\""),
        "{message}"
    );
    assert_eq!(w.off_machine_calls(), 0);
}

#[tokio::test]
async fn nothing_callable_is_a_503_no_tier_available() {
    let w = world(true, "[profiles.default]\nallowed_tiers = [\"cloud\"]\n").await;
    let response = w.app.chat(with_text("chat", "hi", false)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_tier_available");
    assert_eq!(w.local.calls() + w.off_machine_calls(), 0);
}

#[tokio::test]
async fn keys_map_to_profiles_and_auth_can_be_required() {
    let extra = r#"
        [profiles.team]
        cloud_consent = true
        allowed_tiers = ["cloud"]
        [auth]
        required = true
        [[keys]]
        key_env = "TEAM_KEY"
        profile = "team"
    "#;
    let w = world(true, extra).await;
    let anonymous = w.app.chat(with_text("chat", "hi", false)).await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let wrong = client()
        .post(w.app.url("/v1/chat/completions"))
        .bearer_auth("nope")
        .json(&with_text("chat", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(w.local.calls() + w.off_machine_calls(), 0);

    for (name, value) in [("authorization", "Bearer tw-team-key"), ("x-api-key", "tw-team-key")] {
        let response = client()
            .post(w.app.url("/v1/chat/completions"))
            .header(name, value)
            .json(&with_text("chat", "hi", true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(header(&response, "x-tierwise-tier"), "cloud", "the team profile allows only cloud");
    }
    assert_eq!((w.local.calls(), w.cloud.calls()), (0, 2));
    assert!(w.cloud.received().iter().all(|r| r.headers.get("authorization").is_none()), "client keys never travel");
}

#[tokio::test]
async fn the_rules_reply_answers_json_and_sse_when_nothing_else_can() {
    let w = world(false, "").await; // no consent: cloud skipped; local fails
    let response = w.app.chat(with_text("companion", "hi", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "none");
    assert_eq!(header(&response, "x-tierwise-model"), "rules");
    assert!(header(&response, "x-tierwise-attempts").ends_with("cloud/big:skip(no_consent), none/rules:accept:0ms"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "rules");
    assert_eq!(body["choices"][0]["message"]["content"], "I can't answer right now.");

    let body = json!({"model": "companion", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = w.app.chat(body).await;
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.contains("\"content\":\"I can't answer right now.\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(w.cloud.calls(), 0);
}

#[tokio::test]
async fn fallback_to_rules_on_error_stops_at_the_first_failure_but_not_for_a_block() {
    let profile = "[profiles.default]\ncloud_consent = true\nfallback_to_rules_on_error = true\n";
    let w = world(false, profile).await;
    let response = w.app.chat(with_text("companion", "hi", false)).await;
    assert_eq!(header(&response, "x-tierwise-model"), "rules");
    assert_eq!(w.cloud.calls(), 0, "the fallback does not silently switch providers");

    let blocking = UpstreamDouble::start(Behaviour::Status(
        400,
        r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#.into(),
    ))
    .await;
    let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = format!(
        "[upstreams.a]\ntier = \"cloud\"\nbase_url = \"{}\"\n[upstreams.b]\ntier = \"cloud\"\nbase_url = \"{}\"\n\
         [models.a]\nupstream = \"a\"\n[models.b]\nupstream = \"b\"\n\
         [tasks.t]\nchain = [\"a\", \"b\"]\nrules = {{ reply = \"fallback\" }}\n{profile}",
        blocking.base_url(),
        next.base_url()
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(with_text("t", "draw something", false)).await;
    assert_eq!(response.status(), 400, "a provider block goes back as it is");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert_eq!(next.calls(), 0, "never retried on another provider");
}

#[tokio::test]
async fn tier_too_low_and_privacy_blocked_are_403s_that_say_what_to_change() {
    let extra = "[profiles.default]\nallowed_tiers = [\"local\", \"server\"]\n\
                 [profiles.pinned]\ncloud_consent = true\ntask_overrides = { \"chat\" = \"cloud\" }\n\
                 [[keys]]\nkey_env = \"TEAM_KEY\"\nprofile = \"pinned\"\n";
    let w = world(true, extra).await;
    let response = w.app.chat(with_text("pro", "hi", false)).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tier_too_low");
    assert!(body["error"]["message"].as_str().unwrap().contains("add cloud to allowed_tiers of profile \"default\""));

    let pinned = |text: &str| {
        client()
            .post(w.app.url("/v1/chat/completions"))
            .bearer_auth("tw-team-key")
            .json(&with_text("chat", text, true))
            .send()
    };
    let response = pinned("write to eve@example.com").await.unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "privacy_blocked");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("remove task_overrides.\"chat\" from profile \"pinned\""));
    assert_eq!(w.off_machine_calls(), 0);

    let response = pinned("no secrets here").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "cloud", "the override is used verbatim");
    assert_eq!((w.local.calls(), w.cloud.calls()), (0, 1));

    let metrics = client().get(w.app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tierwise_privacy_blocked_total{reason="privacy_blocked",task="chat"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"tierwise_privacy_blocked_total{reason="tier_too_low",task="pro"} 1"#), "{metrics}");
}

#[tokio::test]
async fn explain_shows_the_plan_without_calling_anything() {
    let extra = "[profiles.team]\ncloud_consent = true\n[[keys]]\nkey_env = \"TEAM_KEY\"\nprofile = \"team\"\n\
                 [[keys]]\nkey_env = \"ADMIN_KEY\"\nprofile = \"default\"\nadmin = true\n";
    let w = world(true, extra).await;
    let explain = |key: &'static str, body: Value| {
        client().post(w.app.url("/v1/tierwise/explain")).bearer_auth(key).json(&body).send()
    };
    let body: Value =
        explain("tw-team-key", with_text("chat", "mail a@b.de", false)).await.unwrap().json().await.unwrap();
    assert_eq!(body["profile"], "team");
    assert_eq!(body["content_class"]["class"], "sensitive");
    assert_eq!(body["outcome"], "answers");
    let actions: Vec<(&str, &str)> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["model"].as_str().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("small", "run"), ("mid", "skip"), ("big", "skip")]);
    assert_eq!(body["steps"][2]["reason"], "privacy");

    let mut other = with_text("chat", "hi", false);
    other["profile"] = json!("default");
    let response = explain("tw-team-key", other.clone()).await.unwrap();
    assert_eq!(response.status(), 403, "only admins explain for another profile");
    let body: Value = explain("tw-admin-key", other).await.unwrap().json().await.unwrap();
    assert_eq!(body["profile"], "default");
    assert_eq!(body["steps"][2]["reason"], "no_consent");
    assert_eq!(w.local.calls() + w.off_machine_calls(), 0, "explain calls no model");
}

#[tokio::test]
async fn models_say_whether_the_callers_profile_can_run_each_task() {
    let w = world(true, "[profiles.default]\nallowed_tiers = [\"local\"]\n").await;
    let body: Value = client().get(w.app.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let runnable: Vec<(&str, bool)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["tierwise"]["runnable"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        runnable,
        [
            ("chat", true),
            ("companion", true),
            ("diary", true),
            ("pro", false),
            ("big", false),
            ("mid", false),
            ("small", true)
        ]
    );
}

/// A local upstream that answers a sensitive request with a redirect to another host does
/// not get it sent there: redirects are never followed. The request fails over as from a
/// broken upstream, and the other host sees nothing.
#[tokio::test]
async fn a_redirect_from_an_upstream_is_never_followed() {
    use axum::http::{header::LOCATION, StatusCode};

    let elsewhere = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let target = format!("{}/chat/completions", elsewhere.base_url());
    let redirecting = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, target)]) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, redirecting).await });
    let toml = config_for(&[("local", "local", &format!("http://{addr}/v1"))], &[("t", &["local-model"])], "");
    let app = TestApp::start(&toml).await;
    let mut body = chat_body("t");
    body["messages"][0]["content"] = json!("Write to needle.redirect@example.org please.");
    let response = app.chat(body).await;
    assert_eq!(response.status(), 502, "a redirect is the upstream's error");
    assert_eq!(elsewhere.calls(), 0, "the redirect's target was never called");
}
