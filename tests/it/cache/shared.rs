//! The response cache in Redis: replicas share answers; Redis failing is a miss, never
//! an error; and sensitive requests — or answers holding personal data — stay out of a
//! `server`-tier store, counted by the needle in every value Redis holds.

use serde_json::{json, Value};

use super::{ask_body, cached_config, post, read_stream};
use crate::support::bodies::answer;
use crate::support::redis::RedisServer;
use crate::support::*;

fn redis_state(url: &str, tier: &str) -> String {
    format!("[state]\nbackend = \"redis\"\nurl = \"{url}\"\ncache_tier = \"{tier}\"\n")
}

/// Every cache value Redis holds, as text.
async fn values(redis: &RedisServer) -> Vec<String> {
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("tierwise:cache:*").query_async(&mut connection).await.unwrap();
    let mut values = Vec::new();
    for key in keys {
        let value: Option<String> = ::redis::cmd("GET").arg(&key).query_async(&mut connection).await.unwrap();
        values.extend(value);
    }
    values
}

#[tokio::test]
async fn replicas_share_answers_json_and_stream() {
    let redis = RedisServer::start().await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = cached_config(&cloud, "ttl_s = 60", &redis_state(&redis.url(), "server"));
    let (one, two) = (TestApp::start(&toml).await, TestApp::start(&toml).await);
    let body = ask_body("Shared.").to_string();
    assert_eq!(header(&post(&one, &body, &[]).await, "x-tierwise-cache"), "miss");
    // The write is in the background.
    for _ in 0..50 {
        if !values(&redis).await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(values(&redis).await.len(), 1);

    let hit = post(&two, &body, &[]).await;
    assert_eq!(header(&hit, "x-tierwise-cache"), "hit");
    let answer: Value = hit.json().await.unwrap();
    assert_eq!(answer["tierwise"]["cache"]["store"], "redis");
    let streamed = json!({"model": "cached", "temperature": 0, "stream": true, "messages": [{"role": "user", "content": "Shared."}]});
    let replay = post(&two, &streamed.to_string(), &[]).await;
    assert_eq!(header(&replay, "x-tierwise-cache"), "hit");
    let (content, _) = read_stream(&replay.bytes().await.unwrap());
    assert_eq!(content, answer["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(cloud.calls(), 1);
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("tierwise:cache:v1:*").query_async(&mut connection).await.unwrap();
    let ttl: i64 = ::redis::cmd("PTTL").arg(&keys[0]).query_async(&mut connection).await.unwrap();
    assert!((50_000..=60_000).contains(&ttl), "kept for ttl_s: {ttl} ms");
}

#[tokio::test]
async fn redis_out_is_a_miss_never_an_error() {
    let dead = dead_address().await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app =
        TestApp::start(&cached_config(&cloud, "ttl_s = 60", &redis_state(&format!("redis://{dead}/0"), "server")))
            .await;
    let body = ask_body("Nobody home.").to_string();
    for _ in 0..3 {
        let response = post(&app, &body, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-tierwise-cache"), "miss");
    }
    assert_eq!(cloud.calls(), 3);
    assert!(super::metric(&app, "tierwise_cache_errors_total{operation=\"get\"}").await >= 1.0);
}

#[tokio::test]
async fn sensitive_answers_stay_in_this_process_unless_redis_is_local() {
    let redis = RedisServer::start().await;
    let needle = "needle.cache@example.org";
    let local = UpstreamDouble::start(answer("Noted.")).await;
    let chatty = UpstreamDouble::start(answer(&format!("Write to {needle}."))).await;
    let toml = |tier: &str| {
        config_for(
            &[("local", "local", &local.base_url()), ("chatty", "local", &chatty.base_url())],
            &[("cached", &["local-model"]), ("echo", &["chatty-model"])],
            &redis_state(&redis.url(), tier),
        )
        .replace("[tasks.\"cached\"]\n", "[tasks.\"cached\"]\ncache = { ttl_s = 60 }\n")
        .replace("[tasks.\"echo\"]\n", "[tasks.\"echo\"]\ncache = { ttl_s = 60 }\n")
    };
    let app = TestApp::start(&toml("server")).await;
    // Sensitive by the detector: a digest of it is not even looked up in Redis.
    let sensitive = ask_body(&format!("Mail {needle} the invoice.")).to_string();
    assert_eq!(header(&post(&app, &sensitive, &[]).await, "x-tierwise-cache"), "miss");
    let hit = post(&app, &sensitive, &[]).await;
    assert_eq!(header(&hit, "x-tierwise-cache"), "hit");
    assert_eq!(header(&hit, "x-tierwise-content-class"), "sensitive");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit["tierwise"]["cache"]["store"], "memory");
    // A normal request whose local answer holds personal data: kept locally too.
    let echo =
        json!({"model": "echo", "temperature": 0, "messages": [{"role": "user", "content": "Who do I write to?"}]});
    post(&app, &echo.to_string(), &[]).await;
    let echoed = post(&app, &echo.to_string(), &[]).await;
    assert_eq!(header(&echoed, "x-tierwise-cache"), "hit");
    let echoed: Value = echoed.json().await.unwrap();
    assert_eq!(echoed["tierwise"]["cache"]["store"], "memory");
    // And a normal answer without any does go to Redis.
    post(&app, &ask_body("Nothing personal.").to_string(), &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let held = values(&redis).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held.iter().all(|v| !v.contains("needle.cache")), "{held:?}");
    assert_eq!((local.calls(), chatty.calls()), (2, 1));

    // Declared local, Redis may hold them.
    let local_redis = TestApp::start(&toml("local")).await;
    post(&local_redis, &sensitive, &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(values(&redis).await.len(), 2);
}
