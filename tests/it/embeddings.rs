//! `POST /v1/embeddings` end to end: the official Python SDK against the real SmolLM2
//! (llama-server `--embeddings`); vectors passed on byte for byte from a double serving
//! llama-server's recorded base64 answer; the same task policy — sensitive input (and
//! token ids the detector cannot read) embedded only by the local model, a failing model
//! giving way to the next — counted at the doubles; what `/v1/models` says each serves.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::sdk::run_python;
use crate::support::llama::LlamaServer;
use crate::support::*;

/// llama-server serving SmolLM2 for chat and for embeddings, as `chat` and `embed`.
fn both(llama: &LlamaServer) -> String {
    format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n\
         [models.embed]\nupstream = \"local\"\nname = \"smollm2\"\nserves = [\"embeddings\"]\n\
         [models.smollm2]\nupstream = \"local\"\n[tasks.chat]\nchain = [\"smollm2\"]\n",
        llama.base_url()
    )
}

#[tokio::test]
async fn the_python_sdk_embeds_through_tierwise() {
    let llama = LlamaServer::start_with(&["--embeddings", "--pooling", "mean"]).await;
    let app = TestApp::start(&both(&llama)).await;
    run_python("openai_embeddings_test.py", &app, 3).await;
}

#[tokio::test]
async fn langchain_clients_through_tierwise() {
    let llama = LlamaServer::start_with(&["--embeddings", "--pooling", "mean"]).await;
    let app = TestApp::start(&both(&llama)).await;
    run_python("langchain_test.py", &app, 3).await;
}

/// A local and a cloud embedding model behind task `docs`.
async fn embedding_chain(local: Behaviour) -> (UpstreamDouble, UpstreamDouble, TestApp) {
    let local = UpstreamDouble::start(local).await;
    let cloud = UpstreamDouble::start(Behaviour::json("llama_server/embeddings_base64.json")).await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\ncircuit_failures = 0\n[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\n\
         [models.small-embed]\nupstream = \"local\"\nserves = [\"embeddings\"]\n\
         [models.big-embed]\nupstream = \"cloud\"\nserves = [\"embeddings\"]\n\
         [models.chatty]\nupstream = \"local\"\n\
         [tasks.docs]\nchain = [\"small-embed\", \"big-embed\"]\n[tasks.chat]\nchain = [\"chatty\"]\n\
         [profiles.default]\ncloud_consent = true\n",
        local.base_url(),
        cloud.base_url()
    );
    (local, cloud, TestApp::start(&toml).await)
}

async fn embed(app: &TestApp, body: Value) -> reqwest::Response {
    client().post(app.url("/v1/embeddings")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn vectors_pass_byte_for_byte_with_the_trail() {
    let (local, cloud, app) = embedding_chain(Behaviour::json("llama_server/embeddings_base64.json")).await;
    let response =
        embed(&app, json!({"model": "docs", "input": ["hello world", "the cat sat"], "encoding_format": "base64"}))
            .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    let text = response.text().await.unwrap();
    let recorded = String::from_utf8(fixture("llama_server/embeddings_base64.json").to_vec()).unwrap();
    let (recorded_body, _) = recorded.trim_end().rsplit_once('}').unwrap();
    assert!(text.starts_with(recorded_body), "the upstream's bytes first, then the trail");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["tierwise"]["tier"], "local");
    let sent = &local.received()[0];
    assert_eq!(sent.uri.path(), "/v1/embeddings");
    assert_eq!(
        sent.body,
        json!({"model": "small-embed", "input": ["hello world", "the cat sat"], "encoding_format": "base64"})
    );
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn a_failing_local_model_gives_way_only_for_normal_input() {
    let (local, cloud, app) = embedding_chain(Behaviour::status(500, "openai/error_500_server.json")).await;
    let response = embed(&app, json!({"model": "docs", "input": "quarterly report"})).await;
    assert_eq!((response.status().as_u16(), header(&response, "x-tierwise-tier")), (200, "cloud"));
    assert!(header(&response, "x-tierwise-attempts").starts_with("local/small-embed:error(runtime_error)"));
    assert_eq!(cloud.calls(), 1);

    let response = embed(&app, json!({"model": "docs", "input": ["notes", "write to ann.lee@example.org"]})).await;
    assert_eq!(response.status(), 502, "the only model sensitive input may reach failed");
    let response = embed(&app, json!({"model": "docs", "input": [[9906, 1917], [791, 8415]]})).await;
    assert_eq!(response.status(), 502, "token ids are opaque: they stay local");
    assert_eq!(header(&response, "x-tierwise-content-class"), "sensitive");
    assert_eq!((local.calls(), cloud.calls()), (3, 1));
    assert_eq!(cloud.saw("ann.lee@example.org") + cloud.saw("9906"), 0);
}

#[tokio::test]
async fn each_api_names_what_serves_it() {
    let (_local, _cloud, app) = embedding_chain(Behaviour::json("llama_server/embeddings_base64.json")).await;
    let response = app.chat(json!({"model": "docs", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "\"docs\" serves embeddings, not chat: send it to POST /v1/embeddings");
    let response = embed(&app, json!({"model": "chat", "input": "hi"})).await;
    assert_eq!(response.status(), 400);
    let response = embed(&app, json!({"model": "docs"})).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"]["param"].as_str(), body["error"]["message"].as_str()),
        (Some("input"), Some("missing `input`"))
    );

    let models: Value = client().get(app.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let serves = |id: &str| {
        models["data"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["tierwise"]["serves"].clone()
    };
    assert_eq!(serves("docs"), json!(["embeddings"]));
    assert_eq!(serves("chat"), json!(["chat.completions", "responses"]));
    assert_eq!(serves("big-embed"), json!(["embeddings"]));
}

const NEEDLES: [&str; 4] =
    ["ann.lee@example.org", "DE89 3704 0044 0532 0130 00", "+49 30 1234567", "ｎｅｅｄｌｅ＠example.org"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_personal_data_in_embedding_input_reaches_the_cloud(needle in 0..NEEDLES.len(), form in 0usize..4) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (leaked, status) = runtime.block_on(async {
            let (_local, cloud, app) = embedding_chain(Behaviour::status(500, "openai/error_500_server.json")).await;
            let text = NEEDLES[needle];
            let input = match form {
                0 => json!(format!("mail {text}")),
                1 => json!(["fine", format!("mail {text}")]),
                2 => json!(format!("data:text/plain;base64,{}", base64_of(text))),
                _ => json!([format!("{}\nreach me at {text}", "minutes of the meeting. ".repeat(200))]),
            };
            let response = embed(&app, json!({"model": "docs", "input": input, "user": "u"})).await;
            (cloud.saw(text), response.status().as_u16())
        });
        prop_assert!([200, 502].contains(&status), "status {status}");
        prop_assert_eq!(leaked, 0);
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
