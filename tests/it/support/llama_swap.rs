//! Model-server doubles that report warmth, real HTTP on 127.0.0.1:0: llama-swap (its
//! `/running`, `/v1/models`, `/health`, `/upstream/...`) and ollama's `/api/ps`.
//!
//! Bodies are what the servers send byte for byte: llama-swap is Go with gin, whose
//! `gin.H` maps encode with sorted keys and no trailing newline (`c.JSON`), except the
//! old `/v1/models`, written with `json.NewEncoder` (trailing newline, no `object`).
//! Each double counts requests per path, so a test proves `/upstream/...` — which makes
//! llama-swap load a model — is never asked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;

/// What `/running` looks like, by llama-swap version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunningShape {
    /// Newest: every process that is not stopped — `ready`, `starting`, `stopping` —
    /// with `cmd`, `description`, `model`, `name`, `proxy`, `state`, `ttl`.
    Newest,
    /// Older: the same fields, ready processes only.
    Older,
    /// Oldest: ready processes only, `model` and `state` only.
    Minimal,
    /// No `/running` route at all (404, gin's text body).
    Absent,
}

/// How the double is set up.
#[derive(Clone, Debug)]
pub struct SwapOptions {
    pub running: RunningShape,
    /// Newer llama-swap adds `"status":{"value":"loaded"|"unloaded"}` to `/v1/models`
    /// entries and `"object":"list"` to the list.
    pub models_status: bool,
    /// With `apiKeys` configured, llama-swap answers 401 without `Authorization: Bearer`.
    pub api_key: Option<String>,
}

impl Default for SwapOptions {
    fn default() -> Self {
        SwapOptions { running: RunningShape::Newest, models_status: true, api_key: None }
    }
}

/// `created` of the model list (llama-swap sends the current time).
const CREATED: u64 = 1_764_000_000;

struct Shared {
    options: SwapOptions,
    /// Every configured model id, listed by `/v1/models`.
    models: Vec<String>,
    /// Process state by model; a model that is absent is stopped.
    states: Mutex<BTreeMap<String, &'static str>>,
    /// Requests by path, whatever their answer.
    calls: Mutex<HashMap<String, usize>>,
    /// While true, `/running`, `/v1/models` and `/api/ps` accept and never answer.
    stalled: AtomicBool,
}

pub struct LlamaSwapDouble {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl LlamaSwapDouble {
    pub async fn start(models: &[&str], options: SwapOptions) -> Self {
        let shared = Arc::new(Shared {
            models: models.iter().map(|m| m.to_string()).collect(),
            options: options.clone(),
            states: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(HashMap::new()),
            stalled: AtomicBool::new(false),
        });
        let mut guarded = Router::new()
            .route("/v1/models", get(list_models))
            .route("/v1/chat/completions", post(chat))
            .route("/upstream/{*rest}", any(upstream));
        if options.running != RunningShape::Absent {
            guarded = guarded.route("/running", get(running));
        }
        let app = guarded
            .route_layer(middleware::from_fn_with_state(shared.clone(), api_key))
            .route("/health", get(|| async { text(StatusCode::OK, "OK") }))
            .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found") })
            .layer(middleware::from_fn_with_state(shared.clone(), count))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        LlamaSwapDouble { addr, shared }
    }

    /// The `base_url` to put in tierwise's config.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Sets a model's process state: `Some("ready" | "starting" | "stopping")`, or
    /// `None` for stopped.
    pub fn set_state(&self, model: &str, state: Option<&'static str>) {
        let mut states = self.shared.states.lock().unwrap();
        match state {
            Some(state) => states.insert(model.to_string(), state),
            None => states.remove(model),
        };
    }

    /// Requests received for exactly `path`.
    pub fn calls(&self, path: &str) -> usize {
        self.shared.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests received for any path starting with `prefix`.
    pub fn calls_under(&self, prefix: &str) -> usize {
        self.shared.calls.lock().unwrap().iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, n)| n).sum()
    }

    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }
}

async fn count(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    *shared.calls.lock().unwrap().entry(request.uri().path().to_string()).or_default() += 1;
    next.run(request).await
}

/// llama-swap's `apiKeys` check (Bearer; it also takes Basic and `x-api-key`).
async fn api_key(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(key) = &shared.options.api_key {
        let sent = request.headers().get("authorization").and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {key}").as_str()) {
            return text(StatusCode::UNAUTHORIZED, "unauthorized: invalid or missing API key");
        }
    }
    next.run(request).await
}

async fn stall_if_asked(shared: &Shared) {
    if shared.stalled.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

async fn running(State(shared): State<Arc<Shared>>) -> Response {
    stall_if_asked(&shared).await;
    let states = shared.states.lock().unwrap().clone();
    let shape = shared.options.running;
    let entries: Vec<String> = states
        .iter()
        .filter(|(_, state)| shape == RunningShape::Newest || **state == "ready")
        .enumerate()
        .map(|(i, (name, state))| {
            let model = json_string(name);
            if shape == RunningShape::Minimal {
                return format!(r#"{{"model":{model},"state":"{state}"}}"#);
            }
            let port = 5801 + i;
            let cmd = json_string(&format!("/usr/local/bin/llama-server --port {port} -m /models/{name}.gguf"));
            format!(
                r#"{{"cmd":{cmd},"description":"","model":{model},"name":"","proxy":"http://127.0.0.1:{port}","state":"{state}","ttl":0}}"#
            )
        })
        .collect();
    json(format!(r#"{{"running":[{}]}}"#, entries.join(",")))
}

async fn list_models(State(shared): State<Arc<Shared>>) -> Response {
    stall_if_asked(&shared).await;
    let states = shared.states.lock().unwrap().clone();
    let mut ids: Vec<&String> = shared.models.iter().collect();
    ids.sort();
    if !shared.options.models_status {
        let entries: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(r#"{{"created":{CREATED},"id":{},"object":"model","owned_by":"llama-swap"}}"#, json_string(id))
            })
            .collect();
        return json(format!("{{\"data\":[{}]}}\n", entries.join(",")));
    }
    let entries: Vec<String> = ids
        .iter()
        .map(|id| {
            let status = if states.get(*id) == Some(&"ready") { "loaded" } else { "unloaded" };
            format!(
                r#"{{"created":{CREATED},"id":{},"object":"model","owned_by":"llama-swap","status":{{"value":"{status}"}}}}"#,
                json_string(id)
            )
        })
        .collect();
    json(format!(r#"{{"data":[{}],"object":"list"}}"#, entries.join(",")))
}

/// A chat completion loads its model, as llama-swap does.
async fn chat(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(model) = request["model"].as_str() {
        shared.states.lock().unwrap().insert(model.to_string(), "ready");
    }
    json_body(super::fixture("openai/chat_completion.json"))
}

/// `/upstream/MODEL/...` loads MODEL and proxies to it: the path a prober must never use.
async fn upstream(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let rest = request.uri().path().trim_start_matches("/upstream/").to_string();
    if let Some(model) = rest.split('/').next().filter(|m| !m.is_empty()) {
        shared.states.lock().unwrap().insert(model.to_string(), "ready");
    }
    text(StatusCode::OK, "OK")
}

/// ollama: `/api/ps` lists the loaded models (Go structs: fields in declaration order).
pub struct OllamaDouble {
    pub addr: SocketAddr,
    loaded: Arc<Mutex<BTreeSet<String>>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl OllamaDouble {
    pub async fn start() -> Self {
        let loaded = Arc::new(Mutex::new(BTreeSet::new()));
        let calls = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let (ps_loaded, counted) = (loaded.clone(), calls.clone());
        let app = Router::new()
            .route(
                "/api/ps",
                get(move || {
                    let loaded = ps_loaded.lock().unwrap().clone();
                    async move { json(ps_body(&loaded)) }
                }),
            )
            .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found") })
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                *counted.lock().unwrap().entry(request.uri().path().to_string()).or_default() += 1;
                next.run(request)
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        OllamaDouble { addr, loaded, calls }
    }

    /// ollama's OpenAI-compatible base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Loads (`true`) or unloads a model, by its full name (`llama3:latest`).
    pub fn set_loaded(&self, name: &str, loaded: bool) {
        let mut set = self.loaded.lock().unwrap();
        if loaded {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
    }

    pub fn calls(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn ps_body(loaded: &BTreeSet<String>) -> String {
    let entries: Vec<String> = loaded
        .iter()
        .map(|name| {
            let name = json_string(name);
            format!(
                r#"{{"name":{name},"model":{name},"size":5137025024,"digest":"365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1","details":{{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_0"}},"expires_at":"2024-06-04T14:38:31.83753-07:00","size_vram":5137025024}}"#
            )
        })
        .collect();
    format!(r#"{{"models":[{}]}}"#, entries.join(","))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn json(body: String) -> Response {
    json_body(body.into())
}

fn json_body(body: bytes::Bytes) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap()
}

fn text(status: StatusCode, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap()
}
