//! Spend budgets (issue "Scale-out"): a paid step whose estimated cost would overrun a
//! key's or profile's budget is skipped with reason `budget` — local and free steps still
//! answer — and when nothing is left the client gets 429 `budget_exceeded` with the reset
//! time; in memory per process, in Redis across replicas.

use serde_json::Value;

use crate::support::redis::RedisServer;
use crate::support::*;

const KEYS: &[(&str, &str)] = &[("KEY_A", "key-a")];

/// A free local model and a cloud model at $10 per million tokens (the recorded answer
/// reports 1,163 tokens: $0.01163; the estimate for "Say hello." without max_tokens is
/// 2 + 1,024 tokens: $0.01026). Key `team` may spend $0.03 a day.
async fn app_with_budget(local: &UpstreamDouble, cloud: &UpstreamDouble, state: &str) -> TestApp {
    let toml = config_for(
        &[("local", "local", &local.base_url()), ("cloud", "cloud", &cloud.base_url())],
        &[("paid", &["cloud-model"]), ("cloud_first", &["cloud-model", "local-model"])],
        &format!(
            "{state}\n[[keys]]\nkey_env = \"KEY_A\"\nname = \"team\"\nprofile = \"default\"\nbudget_usd_daily = 0.03\n"
        ),
    )
    .replace(
        "name = \"cloud-upstream-model\"\n",
        "name = \"cloud-upstream-model\"\nprice = { input_usd_per_mtok = 10.0, output_usd_per_mtok = 10.0 }\n",
    );
    TestApp::start_with_env(&toml, KEYS).await
}

async fn ask(app: &TestApp, task: &str, language: &str) -> reqwest::Response {
    client()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("key-a")
        .header("accept-language", language)
        .json(&chat_body(task))
        .send()
        .await
        .unwrap()
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(f64::NAN)
}

/// Two paid answers fit $0.03 ($0.02326 spent); a third would not: the paid-only task gets
/// 429 `budget_exceeded`, the other task is answered locally with the skip in its trail.
async fn spends_until_the_budget_is_used(app: &TestApp, local: &UpstreamDouble, cloud: &UpstreamDouble) {
    for _ in 0..2 {
        let response = ask(app, "paid", "en").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-tierwise-tier"), "cloud");
        // Settled after the answer (with Redis, in the background).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(cloud.calls(), 2);

    let refused = ask(app, "paid", "en").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "until the next UTC midnight: {retry_after}");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "budget_exceeded", "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("over the daily budget of $0.03 of key \"team\" (budget_usd_daily)"), "{message}");
    assert!(message.contains("T00:00:00Z"), "{message}");
    assert_eq!(error["error"]["skipped"][0]["reason"], "budget", "{error}");
    assert_eq!(cloud.calls(), 2, "the over-budget step was never called");

    let answered = ask(app, "cloud_first", "de").await;
    assert_eq!(answered.status(), 200);
    assert_eq!(header(&answered, "x-tierwise-tier"), "local");
    assert!(header(&answered, "x-tierwise-attempts").starts_with("cloud/cloud-model:skip(budget)"));
    let body: Value = answered.json().await.unwrap();
    let why = body["tierwise"]["attempts"][0]["message"].as_str().unwrap();
    assert!(why.contains("Tagesbudget von 0,03 $ für Schlüssel \"team\" ausgeschöpft"), "{why}");
    assert_eq!(local.calls(), 1);

    let spent = metric(app, "tierwise_spend_usd_total{name=\"team\",scope=\"key\"}").await;
    assert!((spent - 0.02326).abs() < 1e-9, "spent {spent}");
    let left = metric(app, "tierwise_budget_remaining_usd{name=\"team\",period=\"daily\",scope=\"key\"}").await;
    assert!((left - 0.00674).abs() < 1e-9, "left {left}");
}

#[tokio::test]
async fn in_memory_a_key_spends_its_daily_budget_then_paid_steps_are_skipped() {
    let local = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = app_with_budget(&local, &cloud, "").await;
    spends_until_the_budget_is_used(&app, &local, &cloud).await;
}

#[tokio::test]
async fn in_redis_the_budget_is_the_fleets_and_survives_a_restart() {
    let redis = RedisServer::start().await;
    let local = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let state = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let app = app_with_budget(&local, &cloud, &state).await;
    spends_until_the_budget_is_used(&app, &local, &cloud).await;
    // Another replica (or this one restarted) sees the same spend.
    let other = app_with_budget(&local, &cloud, &state).await;
    assert_eq!(ask(&other, "paid", "en").await.status(), 429);
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg("tierwise:budget:v1:key:*").query_async(&mut connection).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let spent: i64 = ::redis::cmd("GET").arg(&keys[0]).query_async(&mut connection).await.unwrap();
    assert_eq!(spent, 23_260, "micro-USD: two answers of 1,163 tokens at $10 per million");
}

#[tokio::test]
async fn with_redis_out_budgets_are_kept_locally_or_paid_steps_are_skipped_by_on_error() {
    let dead = dead_address().await;
    let local = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let state = |on_error: &str| {
        format!(
            "[state]\nbackend = \"redis\"\nurl = \"redis://{dead}/0\"\ncommand_timeout_ms = 100\n\
             connect_timeout_ms = 100\non_error = \"{on_error}\"\n"
        )
    };
    // local: this process keeps the budget, exactly as in memory.
    let app = app_with_budget(&local, &cloud, &state("local")).await;
    spends_until_the_budget_is_used(&app, &local, &cloud).await;

    // deny: paid steps are skipped while the budget cannot be checked; local ones answer.
    let app = app_with_budget(&local, &cloud, &state("deny")).await;
    let answered = ask(&app, "cloud_first", "en").await;
    assert_eq!(answered.status(), 200);
    assert!(header(&answered, "x-tierwise-attempts").starts_with("cloud/cloud-model:skip(budget)"));
    let body: Value = answered.json().await.unwrap();
    let why = body["tierwise"]["attempts"][0]["message"].as_str().unwrap();
    assert!(why.contains("cannot be checked") && why.contains("state.on_error"), "{why}");
    let refused = ask(&app, "paid", "en").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1", "come back when the state may be back");
    assert_eq!(cloud.calls(), 2, "only the two calls made under on_error = local");
}

#[tokio::test]
async fn a_priced_judge_is_a_paid_call_reserved_and_settled_against_the_budget() {
    use crate::support::bodies::answer as said;
    let local = UpstreamDouble::start(said("Paris.")).await;
    // The judge answers a verdict reporting 12 tokens: $0.00012 at $10 per million.
    let judge = UpstreamDouble::start(said(r#"{"accept": true}"#)).await;
    let cloud = UpstreamDouble::start(said("Paris is the capital.")).await;
    let app = |budget: &'static str| {
        let toml = config_for(
            &[
                ("local", "local", &local.base_url()),
                ("judge", "server", &judge.base_url()),
                ("cloud", "cloud", &cloud.base_url()),
            ],
            &[("t", &["local-model", "cloud-model"])],
            &format!(
                "[tasks.t.verify]\nchecks = [\"non_empty\"]\njudge = \"judge-model\"\n\n[[keys]]\nkey_env = \"KEY_A\"\n\
                 name = \"team\"\nprofile = \"default\"\nbudget_usd_daily = {budget}\n"
            ),
        )
        .replace(
            "name = \"judge-upstream-model\"\n",
            "name = \"judge-upstream-model\"\nprice = { input_usd_per_mtok = 10.0, output_usd_per_mtok = 10.0 }\n",
        )
        .replace(
            "name = \"cloud-upstream-model\"\n",
            "name = \"cloud-upstream-model\"\nprice = { input_usd_per_mtok = 10.0, output_usd_per_mtok = 10.0 }\n",
        );
        async move { TestApp::start_with_env(&toml, KEYS).await }
    };

    // Enough: the judge is called, accepts, and its real cost is what the key spent.
    let rich = app("1.0").await;
    let response = ask(&rich, "t", "en").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    assert_eq!(judge.calls(), 1);
    let spent = metric(&rich, "tierwise_spend_usd_total{name=\"team\",scope=\"key\"}").await;
    assert!((spent - 0.00012).abs() < 1e-12, "spent {spent}");

    // A tenth of a cent: the judge's estimate (its prompt and 256 tokens) does not fit,
    // so it is not asked; the answer escalates, and the paid cloud step does not fit either.
    let poor = app("0.001").await;
    let refused = ask(&poor, "t", "en").await;
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "budget_exceeded");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("judge \"judge-model\" skipped: over the daily budget of $0.0010"), "{message}");
    assert_eq!(judge.calls(), 1, "the poor key's request never reached the judge");
    assert_eq!(cloud.calls(), 0);
}
