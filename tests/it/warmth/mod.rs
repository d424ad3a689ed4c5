//! Warmth: probers against llama-swap and ollama doubles and the real llama-server, on
//! paused tokio time where timing matters (cadence, staleness, probe timeout, stop).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tierwise::config::{self, ConfigError, WarmthSource};
use tierwise::metrics::Metrics;
use tierwise::shutdown::CancellationToken;
use tierwise::warmth::{Observation, Snapshot, View, Warmth};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::llama_swap::{LlamaSwapDouble, OllamaDouble, RunningShape, SwapOptions};
use crate::support::{client, llama::LlamaServer, TestApp};

mod llama_server;

const REFRESH: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Upstream `swap` (llama-swap, 1 s refresh, 200 ms probe timeout) serving aliases
/// `small` (`small-q4` upstream) and `big` (`big-q8`).
fn swap_config(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.swap]
tier = "local"
base_url = "{base_url}"
warmth = "llama-swap"
refresh_ms = 1000
probe_timeout_ms = 200
{extra}

[models.small]
upstream = "swap"
name = "small-q4"

[models.big]
upstream = "swap"
name = "big-q8"

[tasks.chat]
chain = ["small", "big"]
"#
    )
}

fn warmth_of(toml: &str, env: &[(&str, &str)]) -> (Warmth, Metrics) {
    let owned: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| owned.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let config = config::load_from_str(toml, &lookup).unwrap_or_else(|e| panic!("test config: {e}"));
    let metrics = Metrics::new().unwrap();
    (Warmth::new(&config, metrics.clone()).unwrap(), metrics)
}

/// Waits for a probe taken after `after` (any probe when `None`).
async fn next_probe(view: &mut watch::Receiver<View>, after: Option<Instant>) -> Snapshot {
    loop {
        if let Some(probe) = view.borrow_and_update().probe.clone() {
            if after.is_none_or(|after| probe.taken_at > after) {
                return probe;
            }
        }
        view.changed().await.unwrap();
    }
}

async fn swap(options: SwapOptions) -> LlamaSwapDouble {
    LlamaSwapDouble::start(&["small-q4", "big-q8"], options).await
}

#[tokio::test(start_paused = true)]
async fn newest_running_counts_ready_as_warm_and_starting_or_stopping_as_cold() {
    let double = swap(SwapOptions::default()).await;
    double.set_state("small-q4", Some("ready"));
    double.set_state("big-q8", Some("starting"));
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    next_probe(&mut view, None).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true));
    assert_eq!(warmth.is_warm("swap", "big-q8"), Some(false));
    let report = &warmth.report()["swap"];
    assert_eq!(
        (report.state, report.warm.clone(), report.cold.clone()),
        ("up", vec!["small".into()], vec!["big".into()])
    );

    double.set_state("big-q8", Some("stopping"));
    double.set_state("small-q4", None);
    let first = view.borrow().probe.as_ref().map(|p| p.taken_at);
    next_probe(&mut view, first).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(false));
    assert_eq!(warmth.is_warm("swap", "big-q8"), Some(false));
    probers.stop().await;
    assert_eq!(double.calls_under("/upstream"), 0, "a probe must never load a model");
}

#[tokio::test(start_paused = true)]
async fn older_and_minimal_running_shapes_list_ready_models() {
    for shape in [RunningShape::Older, RunningShape::Minimal] {
        let double = swap(SwapOptions { running: shape, ..SwapOptions::default() }).await;
        double.set_state("big-q8", Some("ready"));
        let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
        let mut view = warmth.subscribe("swap").unwrap();
        let probers = warmth.start(CancellationToken::new());
        next_probe(&mut view, None).await;
        assert_eq!(warmth.is_warm("swap", "big-q8"), Some(true), "{shape:?}");
        assert_eq!(warmth.is_warm("swap", "small-q4"), Some(false), "{shape:?}");
        assert_eq!(double.calls("/v1/models"), 0, "{shape:?}: /running answered, no fallback");
        probers.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_running_it_falls_back_to_the_model_status() {
    let double = swap(SwapOptions { running: RunningShape::Absent, ..SwapOptions::default() }).await;
    double.set_state("small-q4", Some("ready"));
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    next_probe(&mut view, None).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true));
    assert_eq!(warmth.is_warm("swap", "big-q8"), Some(false));
    assert_eq!((double.calls("/running"), double.calls("/v1/models")), (1, 1));
    probers.stop().await;
    assert_eq!(double.calls_under("/upstream"), 0);
}

#[tokio::test(start_paused = true)]
async fn without_running_or_status_the_upstream_counts_as_down() {
    let options = SwapOptions { running: RunningShape::Absent, models_status: false, api_key: None };
    let double = swap(options).await;
    double.set_state("small-q4", Some("ready"));
    let (warmth, metrics) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    let probe = next_probe(&mut view, None).await;
    let Observation::Down(why) = probe.observation else { panic!("expected down, got {probe:?}") };
    assert!(why.contains("no /running") && why.contains("carries no status"), "{why}");
    assert_eq!(warmth.is_warm("swap", "small-q4"), None, "unknown, not cold");
    assert!(metrics_text(&metrics).contains(r#"tierwise_upstream_up{upstream="swap"} 0"#));
    probers.stop().await;
}

#[tokio::test(start_paused = true)]
async fn probes_follow_the_refresh_period() {
    let double = swap(SwapOptions::default()).await;
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let start = Instant::now();
    let probers = warmth.start(CancellationToken::new());
    let first = next_probe(&mut view, None).await;
    assert_eq!(first.taken_at, start, "the first probe goes out at once");
    tokio::time::sleep(REFRESH * 5 + Duration::from_millis(100)).await;
    assert_eq!(double.calls("/running"), 6, "one at start, one per period");
    let newest = view.borrow().probe.clone().unwrap();
    assert_eq!(newest.taken_at - start, REFRESH * 5);
    probers.stop().await;
    assert_eq!(double.calls_under("/upstream"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_older_than_three_periods_is_unknown() {
    let double = swap(SwapOptions::default()).await;
    double.set_state("small-q4", Some("ready"));
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    let probe = next_probe(&mut view, None).await;
    // No newer probe will come.
    probers.stop().await;
    tokio::time::sleep_until(probe.taken_at + REFRESH * 3).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true), "three periods old still counts");
    assert_eq!(warmth.is_warm("swap", "big-q8"), Some(false));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), None);
    assert_eq!(warmth.is_warm("swap", "big-q8"), None);
    assert_eq!(warmth.report()["swap"].state, "stale");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_upstream_is_down_after_the_probe_timeout_and_logged_once() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let double = swap(SwapOptions::default()).await;
    double.set_state("small-q4", Some("ready"));
    double.stall(true);
    let (warmth, metrics) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let start = Instant::now();
    let probers = warmth.start(CancellationToken::new());
    let probe = next_probe(&mut view, None).await;
    assert_eq!(Instant::now() - start, PROBE_TIMEOUT, "down exactly when the probe times out");
    assert_eq!(probe.observation, Observation::Down("no answer within 200 ms".into()));
    assert_eq!(warmth.is_warm("swap", "small-q4"), None);
    assert!(metrics_text(&metrics).contains(r#"tierwise_upstream_up{upstream="swap"} 0"#));

    tokio::time::sleep(REFRESH * 5).await;
    assert_eq!(double.calls("/running"), 6, "it keeps probing");
    assert_eq!(logs.count("warmth probe failed"), 1, "logged once, not per poll:\n{}", logs.text());

    double.stall(false);
    let last = view.borrow().probe.as_ref().map(|p| p.taken_at);
    next_probe(&mut view, last).await;
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true));
    assert!(metrics_text(&metrics).contains(r#"tierwise_upstream_up{upstream="swap"} 1"#));
    assert_eq!(logs.count("answers again"), 1, "{}", logs.text());
    assert_eq!(logs.count("warmth probe failed"), 1);
    probers.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_served_request_marks_its_model_warm_until_a_newer_probe() {
    let double = swap(SwapOptions::default()).await;
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    let probe = next_probe(&mut view, None).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(false));

    tokio::time::sleep(Duration::from_millis(10)).await;
    warmth.mark_warm("swap", "small-q4");
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true), "at once, no probe needed");
    assert_eq!(warmth.is_warm("swap", "big-q8"), Some(false));
    assert_eq!(double.calls("/running"), 1, "marking asked nothing");

    // The double never loaded it (as if llama-swap swapped it out): the newer probe wins.
    next_probe(&mut view, Some(probe.taken_at)).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(false));
    warmth.mark_warm("nope", "small-q4");
    assert_eq!(warmth.is_warm("nope", "small-q4"), None);
    probers.stop().await;
}

#[tokio::test(start_paused = true)]
async fn probers_stop_when_told_and_when_dropped() {
    let double = swap(SwapOptions::default()).await;
    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();

    let probers = warmth.start(CancellationToken::new());
    assert_eq!(probers.len(), 1);
    next_probe(&mut view, None).await;
    tokio::time::sleep(REFRESH * 2 + Duration::from_millis(100)).await;
    assert_eq!(double.calls("/running"), 3);
    probers.stop().await;
    tokio::time::sleep(REFRESH * 10).await;
    assert_eq!(double.calls("/running"), 3, "no probe after stop");

    let probers = warmth.start(CancellationToken::new());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(double.calls("/running"), 4);
    drop(probers);
    tokio::time::sleep(REFRESH * 10).await;
    assert_eq!(double.calls("/running"), 4, "dropping the handle stops them too");
}

#[tokio::test(start_paused = true)]
async fn the_upstream_api_key_is_sent_with_every_probe() {
    let double = swap(SwapOptions { api_key: Some("sk-swap".into()), ..SwapOptions::default() }).await;
    double.set_state("small-q4", Some("ready"));

    let keyed = swap_config(&double.base_url(), "api_key_env = \"SWAP_KEY\"");
    let (warmth, _) = warmth_of(&keyed, &[("SWAP_KEY", "sk-swap")]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    next_probe(&mut view, None).await;
    assert_eq!(warmth.is_warm("swap", "small-q4"), Some(true));
    probers.stop().await;

    let (warmth, _) = warmth_of(&swap_config(&double.base_url(), ""), &[]);
    let mut view = warmth.subscribe("swap").unwrap();
    let probers = warmth.start(CancellationToken::new());
    let probe = next_probe(&mut view, None).await;
    assert_eq!(
        probe.observation,
        Observation::Down("GET /running answered 401 Unauthorized: check the upstream's api_key_env".into())
    );
    probers.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ollama_ps_lists_the_loaded_models() {
    let double = OllamaDouble::start().await;
    double.set_loaded("llama3:latest", true);
    let toml = format!(
        "[upstreams.ollama]\ntier = \"local\"\nbase_url = \"{}\"\nwarmth = \"ollama\"\n\n[models.llama]\nupstream = \"ollama\"\nname = \"llama3\"\n\n[models.qwen]\nupstream = \"ollama\"\nname = \"qwen2.5:0.5b\"\n",
        double.base_url()
    );
    let (warmth, _) = warmth_of(&toml, &[]);
    let mut view = warmth.subscribe("ollama").unwrap();
    let probers = warmth.start(CancellationToken::new());
    let first = next_probe(&mut view, None).await;
    assert_eq!(warmth.is_warm("ollama", "llama3"), Some(true), "llama3 is llama3:latest");
    assert_eq!(warmth.is_warm("ollama", "qwen2.5:0.5b"), Some(false));
    double.set_loaded("llama3:latest", false);
    double.set_loaded("qwen2.5:0.5b", true);
    next_probe(&mut view, Some(first.taken_at)).await;
    assert_eq!(warmth.report()["ollama"].warm, vec!["qwen".to_string()]);
    assert_eq!(double.calls("/api/ps"), 2, "default refresh is 2 s: two probes by now");
    probers.stop().await;
}

#[test]
fn always_and_none_need_no_probe() {
    let toml = "[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"https://api.example.com/v1\"\nwarmth = \"always\"\n\n[upstreams.lan]\ntier = \"server\"\nbase_url = \"http://10.0.0.2:8080/v1\"\n\n[models.gpt]\nupstream = \"cloud\"\n\n[models.lan]\nupstream = \"lan\"\n";
    let (warmth, _) = warmth_of(toml, &[]);
    assert_eq!(warmth.is_warm("cloud", "gpt"), Some(true));
    assert_eq!(warmth.is_warm("lan", "lan"), None);
    let report = warmth.report();
    assert_eq!((report["cloud"].state, report["cloud"].warm.clone()), ("always", vec!["gpt".to_string()]));
    assert_eq!(report["lan"].state, "unknown");
}

#[test]
fn warmth_keys_are_validated_and_defaulted() {
    let toml = r#"
        [upstreams.a]
        tier = "local"
        base_url = "http://127.0.0.1:8080/v1"
        warmth = "llamaswap"
        [upstreams.b]
        tier = "local"
        base_url = "http://127.0.0.1:8081/v1"
        warmth = "llama-swap"
        refresh_ms = 100
        probe_timeout_ms = 500
        [upstreams.c]
        tier = "local"
        base_url = "http://127.0.0.1:8082/v1"
        refresh_ms = 0
        "#;
    let Err(ConfigError::Invalid { problems, .. }) = config::load_from_str(toml, &|_| None) else {
        panic!("expected validation problems")
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["upstreams.a.warmth", "upstreams.b.probe_timeout_ms", "upstreams.c.refresh_ms"]);
    assert!(problems[0].hint.as_deref().unwrap().contains("llama-swap, llama-server, ollama, always"));

    let ok = config::load_from_str("[upstreams.a]\ntier = \"local\"\nbase_url = \"http://h/v1\"\n", &|_| None).unwrap();
    let a = &ok.upstreams["a"];
    assert_eq!((a.warmth, a.refresh, a.probe_timeout), (WarmthSource::None, REFRESH * 2, PROBE_TIMEOUT));
    let fast = "[upstreams.a]\ntier = \"local\"\nbase_url = \"http://h/v1\"\nwarmth = \"ollama\"\nrefresh_ms = 50\n";
    let fast = config::load_from_str(fast, &|_| None).unwrap();
    assert_eq!(fast.upstreams["a"].probe_timeout, Duration::from_millis(50), "the default fits the period");
}

#[tokio::test]
async fn the_double_speaks_llama_swap() {
    let double =
        swap(SwapOptions { running: RunningShape::Minimal, api_key: Some("k".into()), ..Default::default() }).await;
    double.set_state("small-q4", Some("ready"));
    let url = |path: &str| format!("http://{}{path}", double.addr);
    let health = client().get(url("/health")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "OK");
    assert_eq!(client().get(url("/running")).send().await.unwrap().status(), 401);
    let running = client().get(url("/running")).bearer_auth("k").send().await.unwrap();
    assert_eq!(running.text().await.unwrap(), r#"{"running":[{"model":"small-q4","state":"ready"}]}"#);
    // The path a prober must never take: it loads the model, and the double counts it.
    client().get(url("/upstream/big-q8/health")).bearer_auth("k").send().await.unwrap();
    assert_eq!(double.calls_under("/upstream"), 1);
    let running = client().get(url("/running")).bearer_auth("k").send().await.unwrap().text().await.unwrap();
    assert!(running.contains("big-q8"), "{running}");
}

#[tokio::test]
async fn readyz_and_metrics_show_warmth_and_shutdown_stops_the_probers() {
    let double = swap(SwapOptions::default()).await;
    double.set_state("small-q4", Some("ready"));
    let fast = "refresh_ms = 50\nprobe_timeout_ms = 50";
    let toml = swap_config(&double.base_url(), "")
        .replace("refresh_ms = 1000\nprobe_timeout_ms = 200", fast)
        .replace("[tasks.chat]", "[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"https://api.example.com/v1\"\nwarmth = \"always\"\n\n[models.gpt]\nupstream = \"cloud\"\n\n[tasks.chat]");
    let mut app = TestApp::start(&toml).await;
    let readyz = app.url("/readyz");
    let ready = wait_for(Duration::from_secs(10), || {
        let readyz = readyz.clone();
        async move {
            let ready: Value = client().get(readyz).send().await.unwrap().json().await.unwrap();
            (ready["warmth"]["swap"]["state"] == "up").then_some(ready)
        }
    })
    .await;
    assert_eq!(ready["status"], "ready");
    let swap = &ready["warmth"]["swap"];
    assert_eq!(swap["source"], "llama-swap");
    assert_eq!(swap["warm"], serde_json::json!(["small"]));
    assert_eq!(swap["cold"], serde_json::json!(["big"]));
    assert_eq!(ready["warmth"]["cloud"]["state"], "always");
    assert_eq!(ready["warmth"]["cloud"]["warm"], serde_json::json!(["gpt"]));
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tierwise_upstream_up{upstream="swap"} 1"#), "{metrics}");

    app.begin_shutdown();
    app.server.take().unwrap().await.unwrap().unwrap();
    let probes = double.calls("/running");
    assert!(probes >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(double.calls("/running"), probes, "no probe after shutdown");
    assert_eq!(double.calls_under("/upstream"), 0);
}

/// Polls `check` every 20 ms until it yields, or panics after `within`.
async fn wait_for<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metrics_text(metrics: &Metrics) -> String {
    String::from_utf8(metrics.encode()).unwrap()
}

/// Log lines captured on this thread (the paused-time tests run on one).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
