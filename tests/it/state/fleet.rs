//! Three tierwise processes behind a real HAProxy (Debian package haproxy), round robin,
//! sharing one real redis-server: a key's limit holds across the fleet.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::process::{Child, Command};

use crate::support::redis::RedisServer;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tierwise");

/// The fleet: three replicas, HAProxy in front; everything stops when it drops.
struct Fleet {
    replicas: Vec<(u16, Child)>,
    /// HAProxy's frontend.
    port: u16,
    _haproxy: Child,
    dir: std::path::PathBuf,
}

impl Fleet {
    async fn start(config: &str, env: &[(&str, &str)]) -> Fleet {
        let dir =
            std::env::temp_dir().join(format!("tierwise-fleet-{}-{}", std::process::id(), dead_address().await.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("tierwise.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let port = dead_address().await.port();
            let child = Command::new(BIN)
                .arg("serve")
                .env("TIERWISE_CONFIG", &config_path)
                .env("TIERWISE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            replicas.push((port, child));
        }
        let port = dead_address().await.port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, (p, _))| format!("    server r{i} 127.0.0.1:{p} check inter 200ms\n"))
            .collect();
        let haproxy_cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &haproxy_cfg,
            format!(
                "global\n    maxconn 1024\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend tierwise\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
                 backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}"
            ),
        )
        .unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy (Debian package haproxy) is required: scripts/test installs it");
        let fleet = Fleet { replicas, port, _haproxy: haproxy, dir };
        fleet.wait_until_all_serve().await;
        fleet
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every replica answers /readyz directly, and HAProxy has marked them up (three
    /// requests in a row through it reach three different replicas).
    async fn wait_until_all_serve(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (port, _) in &self.replicas {
            while client().get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_err() {
                assert!(Instant::now() < deadline, "replica on {port} did not start within 30 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // HAProxy's health checks run every 200 ms; a server is up after two passes.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        while client().get(self.url("/healthz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            assert!(Instant::now() < deadline, "HAProxy did not serve within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn replica_metrics(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.replicas[i].0);
        client().get(url).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn counter(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_key_allowed_60_a_minute_gets_60_across_three_replicas_behind_haproxy() {
    let redis = RedisServer::start().await;
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let config = format!(
        "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n[[keys]]\nkey_env = \"KEY_A\"\nprofile = \"default\"\n\
         requests_per_minute = 60\n",
        config_for(&[("local", "local", &up.base_url())], &[], ""),
        redis.url()
    );
    let fleet = Fleet::start(&config, &[("KEY_A", "key-a")]).await;
    let http = client();
    let body = chat_body("local-model");
    let started = Instant::now();
    let mut statuses = Vec::new();
    for wave in 0..4 {
        let sends =
            (0..50).map(|_| http.post(fleet.url("/v1/chat/completions")).bearer_auth("key-a").json(&body).send());
        for response in join_all(sends).await {
            statuses.push(response.unwrap_or_else(|e| panic!("wave {wave}: {e}")).status().as_u16());
        }
    }
    let took = started.elapsed();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(accepted + limited, 200, "only 200 and 429: {statuses:?}");
    // The bucket refills one a second while the 200 are sent: at most that many more.
    let refilled = took.as_secs_f64().ceil() as usize;
    assert!(
        (60..=60 + refilled).contains(&accepted),
        "{accepted} accepted of 200 in {took:?} (60, plus {refilled} refilled at most)"
    );
    assert_eq!(up.calls(), accepted, "the refused requests never reached the upstream");
    // Round robin: every replica admitted and refused some of them.
    for i in 0..3 {
        let text = fleet.replica_metrics(i).await;
        let served = counter(&text, "tierwise_requests_total{");
        let refused = counter(&text, "tierwise_rate_limited_total{");
        assert!(served > 0.0 && refused > 0.0, "replica {i}: {served} served, {refused} refused");
    }
    eprintln!("fleet: {accepted} of 200 accepted across 3 replicas in {took:?}");
}

#[tokio::test]
async fn a_budget_of_a_cent_holds_across_three_replicas_behind_haproxy() {
    // $1 per million tokens: an answer of 1,163 tokens costs $0.001163; the estimate
    // reserved before each call (no max_tokens) is 1,026 tokens, $0.001026.
    let redis = RedisServer::start().await;
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let config = format!(
        "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n\n[[keys]]\nkey_env = \"KEY_A\"\nname = \"team\"\n\
         profile = \"default\"\nbudget_usd_daily = 0.01\n",
        config_for(&[("cloud", "cloud", &cloud.base_url())], &[("paid", &["cloud-model"])], ""),
        redis.url()
    )
    .replace(
        "name = \"cloud-upstream-model\"\n",
        "name = \"cloud-upstream-model\"\nprice = { input_usd_per_mtok = 1.0, output_usd_per_mtok = 1.0 }\n",
    );
    let fleet = Fleet::start(&config, &[("KEY_A", "key-a")]).await;
    let http = client();
    let body = chat_body("paid");
    let mut statuses = Vec::new();
    // Six at a time: two in flight per replica.
    for _ in 0..5 {
        let sends =
            (0..6).map(|_| http.post(fleet.url("/v1/chat/completions")).bearer_auth("key-a").json(&body).send());
        for response in join_all(sends).await {
            statuses.push(response.unwrap().status().as_u16());
        }
        // Let the settlements (sent after each answer) land.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 30 - accepted, "only 200 and 429: {statuses:?}");
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg("tierwise:budget:v1:key:*").query_async(&mut connection).await.unwrap();
    let spent: i64 = ::redis::cmd("GET").arg(&keys[0]).query_async(&mut connection).await.unwrap();
    assert_eq!(spent, accepted as i64 * 1_163, "every admitted answer settled at its real cost, in micro-USD");
    // Admitted while the spend plus an estimate fits: it stops within one estimate of the
    // budget, and overshoots only by the underestimates of the requests in flight at once.
    assert!((10_000 - 1_026..=10_000 + 6 * (1_163 - 1_026)).contains(&spent), "spent {spent} micro-USD of 10,000");
    assert_eq!(cloud.calls(), accepted);
    eprintln!("fleet budget: {accepted} of 30 admitted, spent ${:.6} of $0.01", spent as f64 / 1e6);
}

#[tokio::test]
async fn a_circuit_opened_on_one_replica_is_open_on_all_and_the_fleets_probe_closes_it_everywhere() {
    let redis = RedisServer::start().await;
    // `bad` fails its first three calls, then answers; `good` always answers.
    let bad = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    for _ in 0..3 {
        bad.then(Behaviour::status(500, "openai/error_500_server.json"));
    }
    let good = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let config = format!(
        "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n",
        config_for(
            &[("bad", "local", &bad.base_url()), ("good", "server", &good.base_url())],
            &[("chain", &["bad-model", "good-model"])],
            "",
        )
        .replace(
            "first_byte_timeout_ms = 2000\n",
            "first_byte_timeout_ms = 2000\nretries = 0\ncircuit_failures = 3\ncircuit_cooldown_ms = 1500\n"
        ),
        redis.url()
    );
    let fleet = Fleet::start(&config, &[]).await;
    let on = |i: usize| {
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", fleet.replicas[i].0);
        async move { client().post(url).json(&chat_body("chain")).send().await.unwrap() }
    };
    // Replica 0 sees three failures in a row and opens the circuit.
    for _ in 0..3 {
        let response = on(0).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-tierwise-tier"), "server");
    }
    assert_eq!(bad.calls(), 3);
    // Replicas 1 and 2 never called `bad`, and skip it too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fleet.replica_metrics(1).await.contains("tierwise_circuit_open{upstream=\"bad\"} 1") {
        assert!(Instant::now() < deadline, "replica 1 did not hear that the circuit opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in [1, 2] {
        let response = on(i).await;
        assert_eq!(response.status(), 200);
        let attempts = header(&response, "x-tierwise-attempts").to_string();
        assert!(attempts.starts_with("local/bad-model:skip(not_available)"), "replica {i}: {attempts}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["tierwise"]["attempts"][0]["message"].as_str().unwrap().contains("circuit open"), "{body}");
    }
    assert_eq!(bad.calls(), 3, "no other replica called the failing upstream");

    // After the cooldown replica 0 probes; `bad` answers now, and its success closes the
    // circuit on the others, which would otherwise wait a second cooldown.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let probe = on(0).await;
    assert_eq!(header(&probe, "x-tierwise-tier"), "local");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fleet.replica_metrics(1).await.contains("tierwise_circuit_open{upstream=\"bad\"} 0") {
        assert!(Instant::now() < deadline, "replica 1 did not hear that the circuit closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(header(&on(1).await, "x-tierwise-tier"), "local");
    assert_eq!(bad.calls(), 5);
}
