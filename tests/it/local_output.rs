//! What a local model says is content too: personal data in a local answer, in a check's
//! or a judge's feedback, never reaches a higher tier — the request is reclassified
//! sensitive (the default) or the data is redacted to placeholders. Counted with a
//! planted needle at the doubles.

use serde_json::{json, Value};

use crate::support::bodies::{answer, streaming};
use crate::support::*;

const NEEDLE: &str = "needle.k4z@example.org";

struct World {
    local: UpstreamDouble,
    judge: UpstreamDouble,
    cloud: UpstreamDouble,
    app: TestApp,
}

/// A local step that answers with the needle (JSON or streamed), a cloud step, and a
/// judge on `judge_tier` answering `verdict`.
async fn world(local: Behaviour, judge_tier: &str, verdict: &str, verify: &str, extra: &str) -> World {
    let local = UpstreamDouble::start(local).await;
    let judge = UpstreamDouble::start(answer(verdict)).await;
    let cloud = UpstreamDouble::start(answer("The cloud's answer.")).await;
    let extra = format!("[tasks.t.verify]\n{verify}\n{extra}");
    let toml = config_for(
        &[
            ("local", "local", &local.base_url()),
            ("judge", judge_tier, &judge.base_url()),
            ("vendor", "cloud", &cloud.base_url()),
        ],
        &[("t", &["local-model", "vendor-model"])],
        &extra,
    );
    let app = TestApp::start(&toml).await;
    World { local, judge, cloud, app }
}

fn ask(stream: bool) -> Value {
    json!({"model": "t", "stream": stream, "messages": [{"role": "user", "content": "Who handles refunds?"}]})
}

fn local_answer(stream: bool) -> Behaviour {
    let text = format!("Write to {NEEDLE} for refunds.");
    if stream {
        streaming(&text)
    } else {
        answer(&text)
    }
}

fn last_user_text(received: &upstream::Received) -> String {
    let messages = received.body["messages"].as_array().unwrap();
    messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_string()
}

use crate::support::upstream;

const CLOUD_JUDGE: &str = "checks = [\"non_empty\"]\njudge = \"judge-model\"";

#[tokio::test]
async fn a_local_answer_with_personal_data_is_not_shown_to_a_cloud_judge_and_the_request_stays_local() {
    for stream in [false, true] {
        let w = world(local_answer(stream), "cloud", "{\"accept\": true}", CLOUD_JUDGE, "").await;
        let response = w.app.chat(ask(stream)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-tierwise-tier"), "local", "the local answer is the last one that may run");
        assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive", "reclassified");
        let text = response.text().await.unwrap();
        assert!(text.contains(NEEDLE), "the client gets its answer");
        assert_eq!((w.judge.calls(), w.cloud.calls()), (0, 0), "stream = {stream}");
    }
}

#[tokio::test]
async fn with_redact_the_cloud_judge_is_not_asked_and_the_next_step_gets_placeholders() {
    let w = world(
        local_answer(false),
        "cloud",
        "{\"accept\": true}",
        CLOUD_JUDGE,
        "[tasks.t.detect]\nlocal_output = \"redact\"\n",
    )
    .await;
    let response = w.app.chat(ask(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "cloud");
    assert_eq!(header(&response, "x-tierwise-content-class"), "normal");
    let body: Value = response.json().await.unwrap();
    let guarded = &body["tierwise"]["attempts"][0]["local_output"][0];
    assert_eq!(guarded["action"], "judge_withheld");
    assert_eq!(guarded["kinds"], json!(["email"]));
    assert_eq!(w.judge.calls(), 0);
    assert_eq!(w.cloud.calls(), 1);
    assert_eq!(w.cloud.saw(NEEDLE) + w.judge.saw(NEEDLE), 0);
    let sent = last_user_text(&w.cloud.received()[0]);
    assert!(sent.contains("held personal data (email)"), "{sent}");
}

#[tokio::test]
async fn a_local_judges_feedback_with_personal_data_never_goes_up() {
    let verdict = format!("{{\"accept\": false, \"feedback\": \"Tell them to write to {NEEDLE} instead.\"}}");
    let local_judge = "checks = [\"non_empty\"]\njudge = \"judge-model\"";
    // Reclassify (the default): nothing above local may run any more.
    let w = world(answer("Ask the front desk."), "local", &verdict, local_judge, "").await;
    let response = w.app.chat(ask(false)).await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert!(header(&response, "x-tierwise-attempts").contains("cloud/vendor-model:skip(privacy)"));
    assert_eq!(w.cloud.calls(), 0);
    // Redact: the cloud step runs, with the feedback's needle replaced.
    let w =
        world(answer("Ask the front desk."), "local", &verdict, local_judge, "[detect]\nlocal_output = \"redact\"\n")
            .await;
    let response = w.app.chat(ask(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(w.cloud.calls(), 1);
    assert_eq!(w.cloud.saw(NEEDLE), 0);
    let sent = last_user_text(&w.cloud.received()[0]);
    assert!(sent.ends_with("Prior attempt feedback: Tell them to write to [email] instead."), "{sent}");
    assert_eq!(w.local.calls(), 1);
}

#[tokio::test]
async fn a_checks_feedback_that_quotes_the_answer_is_screened_too() {
    let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]});
    let request = json!({"model": "t", "messages": [{"role": "user", "content": "Age?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}});
    let quoted = format!("{{\"age\": \"ask {NEEDLE}\"}}");
    let w = world(
        answer(&quoted),
        "local",
        "{\"accept\": true}",
        "checks = [\"json_schema\"]",
        "[detect]\nlocal_output = \"redact\"\n",
    )
    .await;
    let response = w.app.chat(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(w.cloud.calls(), 1);
    assert_eq!(w.cloud.saw(NEEDLE), 0);
    let sent = last_user_text(&w.cloud.received()[0]);
    assert!(sent.contains("[email]"), "{sent}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tierwise"]["attempts"][0]["local_output"][0]["action"], "feedback_redacted");
}
