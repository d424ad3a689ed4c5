//! Shared state on a real redis-server (issue "Scale-out"): rate limits counted across
//! replicas, Redis down at start, killed under load and back, slow behind a delaying
//! proxy — no panic, no stuck request, `state.on_error` followed, state converging once
//! Redis is back. The scripts' arithmetic is in [`scripts`].

mod fleet;
mod scripts;

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::redis::{RedisServer, SlowProxy};
use crate::support::*;

const KEYS: &[(&str, &str)] = &[("KEY_A", "key-a"), ("KEY_B", "key-b")];

/// tierwise on `up` with `[state]` in Redis at `url`, key-a limited by `limits`, key-b
/// unlimited.
async fn replica(up: &UpstreamDouble, url: &str, on_error: &str, limits: &str) -> TestApp {
    TestApp::start_with_env(&replica_toml(up, url, on_error, limits), KEYS).await
}

fn replica_toml(up: &UpstreamDouble, url: &str, on_error: &str, limits: &str) -> String {
    format!(
        "{}\n[state]\nbackend = \"redis\"\nurl = \"{url}\"\ncommand_timeout_ms = 200\nconnect_timeout_ms = 200\n\
         on_error = \"{on_error}\"\n\n[[keys]]\nkey_env = \"KEY_A\"\nprofile = \"default\"\n{limits}\n\
         [[keys]]\nkey_env = \"KEY_B\"\nprofile = \"default\"\n",
        config_for(&[("local", "local", &up.base_url())], &[], "")
    )
}

async fn chat_as(app: &TestApp, key: &str) -> reqwest::Response {
    client()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("local-model"))
        .send()
        .await
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn healthy_upstream() -> UpstreamDouble {
    UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_a_keys_requests_per_minute() {
    let redis = RedisServer::start().await;
    let up = healthy_upstream().await;
    let a = replica(&up, &redis.url(), "local", "requests_per_minute = 5").await;
    let b = replica(&up, &redis.url(), "local", "requests_per_minute = 5").await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(chat_as(app, "key-a").await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert_eq!(up.calls(), 5);
    for app in [&a, &b] {
        assert_eq!(chat_as(app, "key-b").await.status(), 200, "the unlimited key is not limited");
    }
    // A replica started later (or restarted) reads the same buckets.
    let c = replica(&up, &redis.url(), "local", "requests_per_minute = 5").await;
    assert_eq!(chat_as(&c, "key-a").await.status(), 429);
    let text = metrics(&a).await;
    assert_eq!(metric(&text, "tierwise_state_up"), 1.0, "{text}");
    assert_eq!(metric(&text, "tierwise_state_errors_total{operation=\"admit\"}"), 0.0);
}

#[tokio::test]
async fn tokens_are_charged_in_redis_and_every_replica_sees_the_overdraft() {
    // Each answer reports 1,163 tokens: with 2,000 a minute the second request overdraws.
    let redis = RedisServer::start().await;
    let up = healthy_upstream().await;
    let a = replica(&up, &redis.url(), "local", "tokens_per_minute = 2000").await;
    let b = replica(&up, &redis.url(), "local", "tokens_per_minute = 2000").await;
    assert_eq!(chat_as(&a, "key-a").await.status(), 200);
    // The charge is sent after the answer, in the background: wait for it to land.
    let mut connection = redis.connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys: Vec<String> =
            ::redis::cmd("KEYS").arg("tierwise:rate:v1:*").query_async(&mut connection).await.unwrap();
        if let Some(key) = keys.first() {
            let level: Option<f64> =
                ::redis::cmd("HGET").arg(key).arg("tok").query_async(&mut connection).await.unwrap();
            if level.is_some_and(|l| l < 1000.0) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the token charge did not reach Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat_as(&b, "key-a").await.status(), 200, "837 tokens left: admitted, and overdraws");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = chat_as(&a, "key-a").await;
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("2000 tokens per minute"), "{error}");
}

#[tokio::test]
async fn redis_down_at_start_falls_back_to_local_counting_and_says_so() {
    let dead = dead_address().await;
    let up = healthy_upstream().await;
    let app = replica(&up, &format!("redis://{dead}/0"), "local", "requests_per_minute = 2").await;
    let started = Instant::now();
    assert_eq!(chat_as(&app, "key-a").await.status(), 200);
    assert_eq!(chat_as(&app, "key-a").await.status(), 200);
    assert_eq!(chat_as(&app, "key-a").await.status(), 429, "counted in this process meanwhile");
    assert_eq!(chat_as(&app, "key-b").await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "no request waits for Redis: {:?}", started.elapsed());
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "tierwise_state_up"), 0.0, "{text}");
    assert_eq!(metric(&text, "tierwise_state_fallbacks_total{on_error=\"local\"}"), 3.0, "{text}");
    assert!(metric(&text, "tierwise_state_errors_total{operation=\"admit\"}") >= 3.0, "{text}");
}

#[tokio::test]
async fn redis_down_with_on_error_deny_refuses_limited_keys_with_503_and_serves_the_others() {
    let dead = dead_address().await;
    let up = healthy_upstream().await;
    let app = replica(&up, &format!("redis://{dead}/0"), "deny", "requests_per_minute = 100").await;
    let refused = chat_as(&app, "key-a").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), "1");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "state_unavailable", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("on_error"), "{error}");
    assert_eq!(chat_as(&app, "key-b").await.status(), 200, "a key without limits needs no state");
    assert_eq!(up.calls(), 1);
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "tierwise_state_fallbacks_total{on_error=\"deny\"}"), 1.0, "{text}");
}

#[tokio::test]
async fn redis_killed_under_load_and_back_loses_no_request_and_sharing_resumes() {
    let mut redis = RedisServer::start().await;
    let up = healthy_upstream().await;
    let app = replica(&up, &redis.url(), "local", "requests_per_minute = 100000").await;
    let app = std::sync::Arc::new(app);
    let load = |n: usize| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                let started = Instant::now();
                let status = chat_as(&app, "key-a").await.status().as_u16();
                statuses.push((status, started.elapsed()));
            }
            statuses
        })
    };
    let before = load(60);
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.kill().await;
    let during: Vec<_> = (0..4).map(|_| load(30)).collect();
    let mut results = before.await.unwrap();
    for task in during {
        results.extend(task.await.unwrap());
    }
    assert!(results.iter().all(|(status, _)| *status == 200), "every request answered: {results:?}");
    let slowest = results.iter().map(|(_, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_secs(3), "none waited on Redis past its timeouts: slowest {slowest:?}");
    assert_eq!(metric(&metrics(&app).await, "tierwise_state_up"), 0.0);

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(chat_as(&app, "key-a").await.status(), 200);
        if metric(&metrics(&app).await, "tierwise_state_up") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "tierwise did not reconnect to Redis within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("tierwise:rate:v1:*").query_async(&mut connection).await.unwrap();
    assert_eq!(keys.len(), 1, "the key's bucket is back in Redis: {keys:?}");
}

#[tokio::test]
async fn a_slow_redis_costs_at_most_the_command_timeout_then_sharing_resumes() {
    let redis = RedisServer::start().await;
    let proxy = SlowProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let up = healthy_upstream().await;
    let app = replica(&up, &proxy.url(), "local", "requests_per_minute = 1000").await;
    assert_eq!(chat_as(&app, "key-a").await.status(), 200);
    assert_eq!(metric(&metrics(&app).await, "tierwise_state_up"), 1.0);

    proxy.set_delay(Duration::from_secs(3));
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(chat_as(&app, "key-a").await.status(), 200);
        // command_timeout_ms = 200: answered long before the 3 s Redis would take.
        assert!(started.elapsed() < Duration::from_millis(2500), "waited {:?}", started.elapsed());
    }
    let text = metrics(&app).await;
    assert_eq!(metric(&text, "tierwise_state_up"), 0.0, "{text}");
    assert!(metric(&text, "tierwise_state_errors_total{operation=\"admit\"}") >= 3.0, "{text}");

    proxy.set_delay(Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(chat_as(&app, "key-a").await.status(), 200);
        if metric(&metrics(&app).await, "tierwise_state_up") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "sharing did not resume within 20 s of Redis being fast again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reload_applies_new_limits_and_budgets_to_the_next_request() {
    let redis = RedisServer::start().await;
    let up = healthy_upstream().await;
    let hex = |key: &[u8]| -> String { tierwise::config::sha256(key).iter().map(|b| format!("{b:02x}")).collect() };
    let config = |limits: &str| {
        format!(
            "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n[[keys]]\nkey_sha256 = \"{}\"\nprofile = \"default\"\nadmin = true\n\n\
             [[keys]]\nkey_sha256 = \"{}\"\nname = \"team\"\nprofile = \"default\"\n{limits}\n",
            config_for(&[("local", "local", &up.base_url())], &[], ""),
            redis.url(),
            hex(b"admin-key"),
            hex(b"key-a"),
        )
        .replace(
            "name = \"local-upstream-model\"\n",
            "name = \"local-upstream-model\"\nprice = { input_usd_per_mtok = 1.0, output_usd_per_mtok = 1.0 }\n",
        )
    };
    let dir = std::env::temp_dir().join(format!("tierwise-state-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tierwise.toml");
    std::fs::write(&path, config("requests_per_minute = 1\nbudget_usd_daily = 1.0")).unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    let reload = || client().post(app.url("/v1/tierwise/reload")).bearer_auth("admin-key").send();

    assert_eq!(chat_as(&app, "key-a").await.status(), 200);
    assert_eq!(chat_as(&app, "key-a").await.status(), 429, "one a minute");
    std::fs::write(&path, config("requests_per_minute = 1000\nbudget_usd_daily = 1.0")).unwrap();
    assert_eq!(reload().await.unwrap().status(), 200);
    assert_eq!(chat_as(&app, "key-a").await.status(), 200, "the new limit applies to the next request");

    // A budget of nothing: the one (paid) step is skipped, the request refused.
    std::fs::write(&path, config("requests_per_minute = 1000\nbudget_usd_daily = 0.0")).unwrap();
    assert_eq!(reload().await.unwrap().status(), 200);
    let refused = chat_as(&app, "key-a").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "budget_exceeded");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn over_tls_with_a_private_ca_the_limit_is_shared_and_without_trusting_it_nothing_connects() {
    let redis = RedisServer::start_tls().await;
    let up = healthy_upstream().await;
    let ca = redis.ca_file().display().to_string();
    let trusting = replica_toml(&up, &redis.url(), "local", "requests_per_minute = 2")
        .replace("[state]\n", &format!("[state]\ntls_ca_file = \"{ca}\"\n"));
    let a = TestApp::start_with_env(&trusting, KEYS).await;
    let b = TestApp::start_with_env(&trusting, KEYS).await;
    assert_eq!(chat_as(&a, "key-a").await.status(), 200);
    assert_eq!(chat_as(&b, "key-a").await.status(), 200);
    assert_eq!(chat_as(&a, "key-a").await.status(), 429, "two a minute across both replicas");
    let text = metrics(&a).await;
    assert_eq!(metric(&text, "tierwise_state_up"), 1.0, "{text}");
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("tierwise:rate:v1:*").query_async(&mut connection).await.unwrap();
    assert_eq!(keys.len(), 1);

    // The system's roots do not include the test CA: the handshake fails, and the
    // replica falls back to counting on its own.
    let untrusting = replica(&up, &redis.url(), "local", "requests_per_minute = 2").await;
    assert_eq!(chat_as(&untrusting, "key-a").await.status(), 200);
    let text = metrics(&untrusting).await;
    assert_eq!(metric(&text, "tierwise_state_up"), 0.0, "{text}");
}
