//! Warmth against the real llama-server: a single-model server is warm once healthy;
//! router mode reports models loading and unloading.

use std::process::Stdio;
use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_single_model_llama_server_is_warm_once_healthy() {
    let llama = LlamaServer::start().await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\nwarmth = \"llama-server\"\nrefresh_ms = 500\nprobe_timeout_ms = 500\n\n[models.smollm2]\nupstream = \"local\"\n",
        llama.base_url()
    );
    let (warmth, _) = warmth_of(&toml, &[]);
    let probers = warmth.start(CancellationToken::new());
    let w = &warmth;
    wait_for(Duration::from_secs(10), || async move { w.is_warm("local", "smollm2").filter(|warm| *warm) }).await;
    assert_eq!(warmth.is_warm("local", "any-name"), Some(true), "one model, served whatever the name");
    probers.stop().await;
}

#[tokio::test]
async fn llama_server_router_mode_reports_loading_and_unloading() {
    let router = Router::start().await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\nwarmth = \"llama-server\"\nrefresh_ms = 500\nprobe_timeout_ms = 500\n\n[models.small]\nupstream = \"local\"\nname = \"smollm2\"\n",
        router.base_url()
    );
    let (warmth, _) = warmth_of(&toml, &[]);
    let probers = warmth.start(CancellationToken::new());
    let is = |expected: bool| {
        let warmth = warmth.clone();
        move || {
            let warmth = warmth.clone();
            async move { (warmth.is_warm("local", "smollm2") == Some(expected)).then_some(()) }
        }
    };
    wait_for(Duration::from_secs(10), is(false)).await;
    router.post("/models/load").await;
    wait_for(Duration::from_secs(60), is(true)).await;
    assert_eq!(warmth.report()["local"].warm, vec!["small".to_string()]);
    router.post("/models/unload").await;
    wait_for(Duration::from_secs(30), is(false)).await;
    probers.stop().await;
}

/// The real llama-server in router mode (`--models-dir`, no autoload) with SmolLM2 as
/// `smollm2`; killed on drop.
struct Router {
    port: u16,
    dir: std::path::PathBuf,
    _child: tokio::process::Child,
}

impl Router {
    async fn start() -> Self {
        let (binary, model) = locate_llama();
        let port = crate::support::dead_address().await.port();
        let dir = std::env::temp_dir().join(format!("tierwise-router-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("smollm2.gguf");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&model, &link).unwrap();
        let child = tokio::process::Command::new(&binary)
            .args(["--models-dir", dir.to_str().unwrap(), "--models-max", "1", "--no-models-autoload"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--ctx-size", "1024", "--threads", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let router = Router { port, dir, _child: child };
        let health = &format!("http://127.0.0.1:{port}/health");
        wait_for(Duration::from_secs(60), || async move {
            let response = client().get(health).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        router
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn post(&self, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = client().post(url).json(&serde_json::json!({"model": "smollm2"})).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `(llama-server, SmolLM2 GGUF)`, as `support::llama` finds them.
fn locate_llama() -> (String, String) {
    if let (Ok(binary), Ok(model)) = (std::env::var("TIERWISE_LLAMA_SERVER"), std::env::var("TIERWISE_SMOLLM2_GGUF")) {
        return (binary, model);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-model.sh");
    let output = std::process::Command::new("bash").arg(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(output.status.success(), "the local LLM is missing; run scripts/test");
    let text = String::from_utf8(output.stdout).unwrap();
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap().to_string();
    (value("TIERWISE_LLAMA_SERVER"), value("TIERWISE_SMOLLM2_GGUF"))
}
