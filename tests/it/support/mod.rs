//! Test support: tierwise itself on 127.0.0.1:0, upstream doubles (chat; llama-swap and
//! ollama warmth), the real local LLM.

pub mod bodies;
pub mod faulty;
pub mod llama;
pub mod llama_swap;
pub mod otlp;
pub mod redis;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use tierwise::app::AppState;
use tierwise::{config, server};
use tokio::task::JoinHandle;

pub use upstream::{Behaviour, Responder, UpstreamDouble};

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(path: &str) -> Bytes {
    let full = fixtures_dir().join(path);
    Bytes::from(std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display())))
}

/// An environment of exactly these variables, for config loading.
fn lookup(env: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name: &str| owned.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// A running tierwise on a free loopback port.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The running app's state (warmth, metrics, config), for tests that seed or inspect it.
    pub state: AppState,
    pub server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts tierwise on `toml`; `env` supplies API-key variables.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Self {
        let config = config::load_from_str(toml, &lookup(env)).unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start_config(config).await
    }

    /// Starts tierwise on a config file (so it can be reloaded from it).
    pub async fn start_file(path: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let config = config::load(Some(path), &lookup(env)).unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start_config(config).await
    }

    async fn start_config(config: config::Config) -> Self {
        let state = AppState::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(server::serve(listener, state.clone()));
        TestApp { addr, state, server: Some(server) }
    }

    pub async fn start(toml: &str) -> Self {
        Self::start_with_env(toml, &[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM's equivalent: stop accepting, finish in-flight requests.
    pub fn begin_shutdown(&mut self) {
        self.state.shutdown.cancel();
    }

    /// POSTs a JSON body to `/v1/chat/completions`.
    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        client().post(self.url("/v1/chat/completions")).json(&body).send().await.unwrap()
    }
}

pub fn client() -> reqwest::Client {
    tierwise::upstream::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A config with one upstream per `(name, tier, base_url)` and a model alias per
/// upstream named `<name>-model` (sent upstream as `<name>-upstream-model`). Unless
/// `extra` writes its own, profile `default` allows every tier with cloud consent.
pub fn config_for(upstreams: &[(&str, &str, &str)], tasks: &[(&str, &[&str])], extra: &str) -> String {
    let mut toml = String::new();
    for (name, tier, base_url) in upstreams {
        toml.push_str(&format!(
            "[upstreams.{name}]\ntier = \"{tier}\"\nbase_url = \"{base_url}\"\nfirst_byte_timeout_ms = 2000\n\n[models.{name}-model]\nupstream = \"{name}\"\nname = \"{name}-upstream-model\"\n\n"
        ));
    }
    for (task, chain) in tasks {
        let chain: Vec<String> = chain.iter().map(|m| format!("\"{m}\"")).collect();
        toml.push_str(&format!("[tasks.\"{task}\"]\nchain = [{}]\n\n", chain.join(", ")));
    }
    if !extra.contains("[profiles.default]") {
        toml.push_str("[profiles.default]\ncloud_consent = true\n\n");
    }
    toml.push_str(extra);
    toml
}

/// `toml` with upstream `name` serving the Responses API itself (`responses = "native"`).
pub fn responses_native(toml: &str, name: &str) -> String {
    let section = format!("[upstreams.{name}]\n");
    toml.replace(&section, &format!("{section}responses = \"native\"\n"))
}

/// A chat request body.
pub fn chat_body(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Say hello."}]})
}

/// A loopback address nothing listens on.
pub async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A JSON body without the `"tierwise"` trail member tierwise appends as the last member:
/// what the upstream sent, byte for byte.
pub fn strip_trail(body: &[u8]) -> Vec<u8> {
    let marker = b",\"tierwise\":";
    let Some(start) = body.windows(marker.len()).rposition(|w| w == marker) else { return body.to_vec() };
    let end = body.iter().rposition(|&b| b == b'}').unwrap_or(body.len());
    let trail: serde_json::Value = serde_json::from_slice(&body[start + marker.len()..end]).expect("the trail is JSON");
    assert!(trail.get("attempts").is_some(), "not tierwise's trail: {trail}");
    [&body[..start], &body[end..]].concat()
}
