//! Verification and escalation: which models were called in which order, what feedback
//! reached the next step, and what the client saw.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::bodies::{answer, completion, sse};
use crate::support::*;

/// Two or three steps (`a` local, `b` server, `c` cloud), the task `t` verified by `verify`.
async fn app(steps: &[(&str, &str, &UpstreamDouble)], verify: &str, extra: &str) -> TestApp {
    let upstreams: Vec<(&str, &str, String)> = steps.iter().map(|(n, t, d)| (*n, *t, d.base_url())).collect();
    let upstreams: Vec<(&str, &str, &str)> = upstreams.iter().map(|(n, t, u)| (*n, *t, u.as_str())).collect();
    let chain: Vec<String> =
        steps.iter().filter(|(n, _, _)| *n != "judge").map(|(n, _, _)| format!("{n}-model")).collect();
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    let extra = format!("[tasks.t.verify]\n{verify}\n{extra}");
    TestApp::start(&config_for(&upstreams, &[("t", &chain)], &extra)).await
}

fn last_user_text(received: &Received) -> String {
    let messages = received.body["messages"].as_array().unwrap();
    messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_string()
}

use crate::support::upstream::Received;

#[tokio::test]
async fn each_failed_check_escalates_with_its_own_feedback() {
    let cases: [(Behaviour, &str, Value, &str); 5] = [
        (answer("   "), "checks = [\"non_empty\"]", json!({}), "the answer was empty"),
        (
            Behaviour::Json(completion("It was the best of", "length")),
            "checks = [\"finish_stop\"]",
            json!({}),
            "cut off at the token limit",
        ),
        (
            answer("{not json"),
            "checks = [\"json\"]",
            json!({"response_format": {"type": "json_object"}}),
            "not valid JSON",
        ),
        (
            answer("I'm sorry, but I can't help with that."),
            "checks = [\"no_refusal\"]",
            json!({}),
            "the answer refused",
        ),
        (
            answer("{\"name\": \"Ann\", \"age\": \"forty\"}"),
            "checks = [\"json_schema\"]",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema":
                {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}}}}),
            "the JSON does not match the schema: at /age",
        ),
    ];
    for (bad, verify, extra_fields, feedback) in cases {
        let local = UpstreamDouble::start(bad).await;
        let cloud = UpstreamDouble::start(answer("A good answer.")).await;
        let app = app(&[("a", "local", &local), ("c", "cloud", &cloud)], verify, "").await;
        let mut body = json!({"model": "t", "messages": [{"role": "user", "content": "Question?"}]});
        body.as_object_mut().unwrap().extend(extra_fields.as_object().unwrap().clone());
        let response = app.chat(body).await;
        assert_eq!(response.status(), 200, "{verify}");
        let attempts = header(&response, "x-tierwise-attempts").to_string();
        assert!(
            attempts.starts_with("local/a-model:escalate:") && attempts.contains("cloud/c-model:accept:"),
            "{attempts}"
        );
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["choices"][0]["message"]["content"], "A good answer.");
        assert!(reply["tierwise"]["attempts"][0]["feedback"].as_str().unwrap().contains(feedback), "{reply}");
        assert_eq!((local.calls(), cloud.calls()), (1, 1));
        let sent = last_user_text(&cloud.received()[0]);
        assert!(sent.starts_with("Question?\n\nPrior attempt feedback: ") && sent.contains(feedback), "{sent}");
    }
}

#[tokio::test]
async fn a_good_local_answer_is_accepted_and_the_next_tier_never_called() {
    let local = UpstreamDouble::start(answer("Paris.")).await;
    let cloud = UpstreamDouble::start(answer("unused")).await;
    let app =
        app(&[("a", "local", &local), ("c", "cloud", &cloud)], "checks = [\"non_empty\", \"finish_stop\"]", "").await;
    let response =
        app.chat(json!({"model": "t", "messages": [{"role": "user", "content": "Capital of France?"}]})).await;
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    let reply: Value = response.json().await.unwrap();
    let attempt = &reply["tierwise"]["attempts"][0];
    assert_eq!(attempt["verdict"], "accept");
    assert!(attempt["verify_ms"].as_f64().is_some());
    assert_eq!((attempt["prompt_tokens"].as_u64(), attempt["completion_tokens"].as_u64()), (Some(5), Some(7)));
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn feedback_accumulates_over_several_escalations() {
    let first = UpstreamDouble::start(answer("")).await;
    let second = UpstreamDouble::start(Behaviour::Json(completion("partial", "length"))).await;
    let last = UpstreamDouble::start(answer("complete")).await;
    let app = app(
        &[("a", "local", &first), ("b", "server", &second), ("c", "cloud", &last)],
        "checks = [\"non_empty\", \"finish_stop\"]",
        "",
    )
    .await;
    let response = app.chat(json!({"model": "t", "messages": [{"role": "user", "content": "Q"}]})).await;
    assert_eq!(header(&response, "x-tierwise-model"), "c-model");
    assert_eq!(last_user_text(&second.received()[0]), "Q\n\nPrior attempt feedback: the answer was empty");
    let sent = last_user_text(&last.received()[0]);
    assert_eq!(
        sent,
        "Q\n\nPrior attempt feedback: the answer was empty\n\nPrior attempt feedback: the answer was cut off at the token limit; answer more concisely"
    );
}

#[tokio::test]
async fn feedback_off_leaves_the_request_as_it_was() {
    let local = UpstreamDouble::start(answer("")).await;
    let cloud = UpstreamDouble::start(answer("ok")).await;
    let app =
        app(&[("a", "local", &local), ("c", "cloud", &cloud)], "checks = [\"non_empty\"]\nfeedback = \"off\"", "")
            .await;
    app.chat(json!({"model": "t", "messages": [{"role": "user", "content": "Q"}]})).await;
    assert_eq!(last_user_text(&cloud.received()[0]), "Q");
}

/// A judge double answering `verdict` as its message content.
async fn judge(verdict: Behaviour) -> UpstreamDouble {
    UpstreamDouble::start(verdict).await
}

#[tokio::test]
async fn the_judge_accepts_rejects_with_feedback_or_escalates_on_garbage_and_timeouts() {
    let cases: [(Behaviour, &str, Option<&str>); 4] = [
        (answer("{\"accept\": true, \"feedback\": \"\"}"), "local", None),
        (
            answer("Verdict:\n```json\n{\"accept\": false, \"feedback\": \"Mention the year.\"}\n```"),
            "cloud",
            Some("Mention the year."),
        ),
        (answer("I think it is fine."), "cloud", Some("verifier error: no verdict in the judge's answer")),
        (Behaviour::Stall, "cloud", Some("verifier error: the judge did not answer within 300 ms")),
    ];
    for (verdict, answered_by, feedback) in cases {
        let local = UpstreamDouble::start(answer("Paris is the capital.")).await;
        let cloud = UpstreamDouble::start(answer("Paris, since 987.")).await;
        let judge = judge(verdict).await;
        let verify = "checks = [\"non_empty\"]\njudge = \"judge-model\"\njudge_timeout_ms = 300";
        let app = app(&[("a", "local", &local), ("c", "cloud", &cloud), ("judge", "local", &judge)], verify, "").await;
        let response = app
            .chat(json!({"model": "t", "messages": [
            {"role": "system", "content": "Answer with history."}, {"role": "user", "content": "Capital of France?"}]}))
            .await;
        assert_eq!(header(&response, "x-tierwise-tier"), answered_by, "{feedback:?}");
        assert_eq!(judge.calls(), 1);
        let prompt = judge.received()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
        assert!(
            prompt.contains("Answer with history.")
                && prompt.contains("Capital of France?")
                && prompt.contains("Paris is the capital.")
        );
        assert_eq!(cloud.calls(), usize::from(answered_by == "cloud"));
        if let Some(feedback) = feedback {
            let sent = last_user_text(&cloud.received()[0]);
            assert!(sent.contains(&format!("Prior attempt feedback: {feedback}")), "{sent}");
        }
    }
}

#[tokio::test]
async fn a_cloud_judge_never_sees_sensitive_content() {
    let local = UpstreamDouble::start(answer("Noted.")).await;
    let local2 = UpstreamDouble::start(answer("Noted, again.")).await;
    let judge = judge(answer("{\"accept\": true}")).await;
    let verify = "checks = [\"non_empty\"]\njudge = \"judge-model\"";
    let app = app(&[("a", "local", &local), ("b", "local", &local2), ("judge", "cloud", &judge)], verify, "").await;
    let response = app
        .chat(json!({"model": "t", "messages": [{"role": "user", "content": "Remind me to email ann@example.org"}]}))
        .await;
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert_eq!(header(&response, "x-tierwise-model"), "b-model", "an unverifiable answer escalates (safe default)");
    assert_eq!(judge.calls(), 0, "the cloud judge never saw the request");
    let sent = last_user_text(&local2.received()[0]);
    assert!(sent.contains("verifier error: judge \"judge-model\" may not see this request"), "{sent}");
}

#[tokio::test]
async fn a_rejected_stream_never_reaches_the_client_and_an_accepted_one_is_replayed() {
    let local = UpstreamDouble::start(Behaviour::Sse { body: sse(""), gap: Duration::ZERO, cut_after: None }).await;
    let cloud =
        UpstreamDouble::start(Behaviour::Sse { body: sse("From the cloud."), gap: Duration::ZERO, cut_after: None })
            .await;
    let app = app(&[("a", "local", &local), ("c", "cloud", &cloud)], "checks = [\"non_empty\"]", "").await;
    let body = json!({"model": "t", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Q"}]});
    let response = app.chat(body.clone()).await;
    assert_eq!(header(&response, "x-tierwise-model"), "c-model");
    let text = response.text().await.unwrap();
    assert_eq!(text.as_bytes(), &sse("From the cloud.")[..], "the final step streams straight through");

    let good =
        UpstreamDouble::start(Behaviour::Sse { body: sse("Local and good."), gap: Duration::ZERO, cut_after: None })
            .await;
    let cloud =
        UpstreamDouble::start(Behaviour::Sse { body: sse("unused"), gap: Duration::ZERO, cut_after: None }).await;
    let app = self::app(&[("a", "local", &good), ("c", "cloud", &cloud)], "checks = [\"non_empty\"]", "").await;
    let response = app.chat(body).await;
    assert_eq!(header(&response, "x-tierwise-model"), "a-model");
    let text = response.text().await.unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[1]["choices"][0]["delta"]["content"], "Local and good.");
    assert_eq!(data.last().unwrap()["usage"]["total_tokens"], 7, "include_usage is honoured in the replay");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn a_slow_verified_stream_sends_keep_alives_then_the_answer_and_the_trail() {
    let slow = UpstreamDouble::start(Behaviour::Sse {
        body: sse("Slow but fine."),
        gap: Duration::from_millis(150),
        cut_after: None,
    })
    .await;
    let cloud =
        UpstreamDouble::start(Behaviour::Sse { body: sse("unused"), gap: Duration::ZERO, cut_after: None }).await;
    let app = app(
        &[("a", "local", &slow), ("c", "cloud", &cloud)],
        "checks = [\"non_empty\"]",
        "[server]\nsse_keepalive_ms = 100\n",
    )
    .await;
    let response =
        app.chat(json!({"model": "t", "stream": true, "messages": [{"role": "user", "content": "Q"}]})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-task"), "t");
    assert_eq!(header(&response, "x-tierwise-tier"), "", "not known when the headers went out");
    let text = response.text().await.unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.contains("\"content\":\"Slow but fine.\""), "{text}");
    let trailer = text.lines().find_map(|l| l.strip_prefix(": tierwise ")).expect("the trail comment");
    let trailer: Value = serde_json::from_str(trailer).unwrap();
    assert_eq!(trailer["tier"], "local");
    assert!(trailer["attempts"].as_str().unwrap().starts_with("local/a-model:accept:"));
    assert!(text.ends_with("data: [DONE]\n\n"));
}
