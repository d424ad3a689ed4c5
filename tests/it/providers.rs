//! OpenAI-compatible cloud and self-hosted providers by config alone: docs/providers.md's
//! snippets, pointed at doubles serving each provider's documented bodies, must send the
//! URL path, query and key header the provider expects — and nothing of the client's.

use serde_json::{json, Value};

use crate::support::*;

/// Every upstream key variable the documented snippets name, with a value per provider.
const KEYS: [(&str, &str); 8] = [
    ("OPENAI_API_KEY", "sk-openai-upstream"),
    ("ANTHROPIC_API_KEY", "sk-ant-upstream"),
    ("AZURE_OPENAI_API_KEY", "azure-upstream-key"),
    ("GEMINI_API_KEY", "gemini-upstream-key"),
    ("OPENROUTER_API_KEY", "sk-or-upstream"),
    ("GROQ_API_KEY", "gsk-groq-upstream"),
    ("TOGETHER_API_KEY", "together-upstream-key"),
    ("VLLM_API_KEY", "vllm-upstream-key"),
];

/// What a client sends that must never reach an upstream.
const CLIENT_SECRET: &str = "client-secret-must-not-travel";

/// The TOML blocks of the "Cloud providers" section of docs/providers.md.
pub fn doc_snippets() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/providers.md")).unwrap();
    let start = doc.find("\n## Cloud providers\n").expect("docs/providers.md has a Cloud providers section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    section.split("```toml\n").skip(1).map(|block| block.split("```").next().unwrap().to_string()).collect()
}

/// The documented snippet configuring `[upstreams.NAME]`.
pub fn doc_snippet(upstream: &str) -> String {
    let header = format!("[upstreams.{upstream}]");
    doc_snippets()
        .into_iter()
        .find(|block| block.contains(&header))
        .unwrap_or_else(|| panic!("docs/providers.md has no snippet for {header}"))
}

/// `snippet` with its `base_url`'s scheme, host and port replaced by the double's,
/// keeping the provider's path (and query).
pub fn pointed_at(snippet: &str, double: &UpstreamDouble) -> String {
    snippet
        .lines()
        .map(|line| match line.strip_prefix("base_url = \"") {
            Some(rest) => {
                let url = reqwest::Url::parse(rest.split('"').next().unwrap()).unwrap();
                let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("base_url = \"http://{}{}{query}\"", double.addr, url.path())
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// tierwise on one documented snippet (pointed at `double`), every key set, cloud consent.
pub async fn app_for(upstream: &str, double: &UpstreamDouble, extra: &str) -> TestApp {
    let toml =
        format!("{}\n{extra}\n[profiles.default]\ncloud_consent = true\n", pointed_at(&doc_snippet(upstream), double));
    TestApp::start_with_env(&toml, &KEYS).await
}

/// A chat request carrying the client's own credentials, which must stay here.
async fn chat_as_client(app: &TestApp, body: Value) -> reqwest::Response {
    client()
        .post(app.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {CLIENT_SECRET}"))
        .header("x-api-key", CLIENT_SECRET)
        .header("api-key", CLIENT_SECRET)
        .header("cookie", format!("session={CLIENT_SECRET}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// What one provider must receive.
struct Expect {
    upstream: &'static str,
    model: &'static str,
    fixture: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    /// The key's header and its exact value.
    key: Option<(&'static str, &'static str)>,
    /// Other headers the snippet sets.
    headers: &'static [(&'static str, &'static str)],
}

async fn check_provider(expect: Expect) {
    let double = UpstreamDouble::start(Behaviour::json(expect.fixture)).await;
    let app = app_for(expect.upstream, &double, "").await;
    let response = chat_as_client(&app, chat_body(expect.model)).await;
    assert_eq!(response.status(), 200, "{}", expect.upstream);
    assert_eq!(header(&response, "x-tierwise-model"), expect.model);
    let body = response.bytes().await.unwrap();
    assert_eq!(strip_trail(&body), fixture(expect.fixture), "passed on byte for byte (plus the trail)");

    let received = &double.received()[0];
    assert_eq!(received.uri.path(), expect.path, "{}", expect.upstream);
    assert_eq!(received.uri.query(), expect.query, "{}", expect.upstream);
    let sent_key = |name: &str| received.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    match expect.key {
        Some((name, value)) => assert_eq!(sent_key(name).as_deref(), Some(value), "{}", expect.upstream),
        None => assert_eq!(sent_key("authorization"), None, "{}", expect.upstream),
    }
    for key_header in ["authorization", "api-key", "x-api-key"] {
        if expect.key.is_none_or(|(name, _)| name != key_header) {
            assert_eq!(sent_key(key_header), None, "{}: {key_header} must not be sent", expect.upstream);
        }
    }
    for (name, value) in expect.headers {
        assert_eq!(sent_key(name).as_deref(), Some(*value), "{}", expect.upstream);
    }
    for (name, value) in &received.headers {
        let value = value.to_str().unwrap_or("");
        assert!(!value.contains(CLIENT_SECRET), "{}: the client's {name} travelled", expect.upstream);
    }
    assert!(received.headers.get("cookie").is_none());
    // The model alias is resolved to the provider's model name.
    let upstream_model = doc_snippet(expect.upstream)
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|rest| rest.split('"').next().unwrap().to_string());
    assert_eq!(received.body["model"].as_str(), upstream_model.as_deref());
}

#[test]
fn every_documented_provider_snippet_is_a_valid_config() {
    let snippets = doc_snippets();
    let all = snippets.join("\n");
    for upstream in ["openai", "anthropic", "azure", "gemini", "openrouter", "groq", "together", "vllm", "ollama"] {
        assert!(all.contains(&format!("[upstreams.{upstream}]")), "docs/providers.md has no snippet for {upstream}");
    }
    let config = tierwise::config::load_from_str(&all, &|name: &str| {
        KEYS.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    })
    .unwrap_or_else(|e| panic!("the provider snippets of docs/providers.md do not load: {e}"));
    assert_eq!(config.upstreams.len(), snippets.len(), "one upstream per snippet");
    let azure = &config.upstreams["azure"];
    assert_eq!(azure.query, vec![("api-version".to_string(), "2024-10-21".to_string())]);
    assert_eq!(config.upstreams["anthropic"].kind, tierwise::config::UpstreamKind::Anthropic);
    assert_eq!(config.upstreams["anthropic"].max_tokens_default, 4096);
}

#[tokio::test]
async fn openai_gets_a_bearer_key_under_v1() {
    check_provider(Expect {
        upstream: "openai",
        model: "gpt",
        fixture: "openai/chat_completion.json",
        path: "/v1/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer sk-openai-upstream")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn azure_gets_the_deployment_path_the_api_version_and_an_api_key_header() {
    check_provider(Expect {
        upstream: "azure",
        model: "azure-gpt",
        fixture: "providers/azure_chat_completion.json",
        path: "/openai/deployments/DEPLOYMENT/chat/completions",
        query: Some("api-version=2024-10-21"),
        key: Some(("api-key", "azure-upstream-key")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn gemini_gets_its_openai_compatible_path_and_a_bearer_key() {
    check_provider(Expect {
        upstream: "gemini",
        model: "gemini-flash",
        fixture: "providers/gemini_chat_completion.json",
        path: "/v1beta/openai/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer gemini-upstream-key")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn openrouter_gets_its_attribution_headers() {
    check_provider(Expect {
        upstream: "openrouter",
        model: "openrouter-mini",
        fixture: "providers/openrouter_chat_completion.json",
        path: "/api/v1/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer sk-or-upstream")),
        headers: &[("http-referer", "https://example.com"), ("x-title", "tierwise")],
    })
    .await;
}

#[tokio::test]
async fn groq_gets_its_openai_path() {
    check_provider(Expect {
        upstream: "groq",
        model: "groq-llama",
        fixture: "providers/groq_chat_completion.json",
        path: "/openai/v1/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer gsk-groq-upstream")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn together_gets_v1() {
    check_provider(Expect {
        upstream: "together",
        model: "together-llama",
        fixture: "providers/together_chat_completion.json",
        path: "/v1/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer together-upstream-key")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn vllm_gets_its_api_key_as_bearer() {
    check_provider(Expect {
        upstream: "vllm",
        model: "qwen",
        fixture: "providers/vllm_chat_completion.json",
        path: "/v1/chat/completions",
        query: None,
        key: Some(("authorization", "Bearer vllm-upstream-key")),
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn ollama_gets_no_key_at_all() {
    check_provider(Expect {
        upstream: "ollama",
        model: "llama",
        fixture: "providers/ollama_chat_completion.json",
        path: "/v1/chat/completions",
        query: None,
        key: None,
        headers: &[],
    })
    .await;
}

#[tokio::test]
async fn provider_streams_pass_through_byte_for_byte() {
    // Azure's first chunk has no choices; OpenRouter sends keep-alive comments first;
    // Groq puts usage in `x_groq`.
    for (upstream, model, stream) in [
        ("azure", "azure-gpt", "providers/azure_chat_stream.sse"),
        ("openrouter", "openrouter-mini", "providers/openrouter_chat_stream.sse"),
        ("groq", "groq-llama", "providers/groq_chat_stream.sse"),
    ] {
        let double = UpstreamDouble::start(Behaviour::sse(stream)).await;
        let app = app_for(upstream, &double, "").await;
        let mut body = chat_body(model);
        body["stream"] = json!(true);
        let response = chat_as_client(&app, body).await;
        assert_eq!(response.status(), 200, "{upstream}");
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        assert_eq!(response.bytes().await.unwrap(), fixture(stream), "{upstream}");
        assert_eq!(double.received()[0].body["stream"], true);
    }
}

/// A second, cheaper-to-reach step after the provider: it must never be called when the
/// provider blocks the content.
pub fn with_fallback_step(fallback: &UpstreamDouble, first_model: &str) -> String {
    format!(
        "[upstreams.next]\ntier = \"cloud\"\nbase_url = \"{}\"\n[models.next-model]\nupstream = \"next\"\n\
         [tasks.chat]\nchain = [\"{first_model}\", \"next-model\"]\n",
        fallback.base_url()
    )
}

#[tokio::test]
async fn a_provider_content_block_goes_back_to_the_client_and_is_never_retried() {
    for (upstream, model, status, fixture_path, code) in [
        ("azure", "azure-gpt", 400, "providers/azure_error_400_content_filter.json", json!("content_filter")),
        ("openrouter", "openrouter-mini", 403, "providers/openrouter_error_403_moderation.json", json!(403)),
    ] {
        let blocking = UpstreamDouble::start(Behaviour::status(status, fixture_path)).await;
        let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
        let app = app_for(upstream, &blocking, &with_fallback_step(&next, model)).await;
        let response = chat_as_client(&app, chat_body("chat")).await;
        assert_eq!(response.status(), status, "{upstream}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{upstream}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("upstream \"{upstream}\": ")), "{message}");
        assert_eq!((blocking.calls(), next.calls()), (1, 0), "{upstream}: a block must not go to another provider");
    }
}

#[tokio::test]
async fn a_gemini_error_in_its_array_envelope_reaches_the_client_readably() {
    let gemini = UpstreamDouble::start(Behaviour::status(400, "providers/gemini_error_400.json")).await;
    let app = app_for("gemini", &gemini, "").await;
    let response = chat_as_client(&app, chat_body("gemini-flash")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "upstream \"gemini\": * GenerateContentRequest.contents: contents is not specified\n"
    );
}

#[test]
fn provider_keys_are_validated_with_every_problem_reported() {
    let toml = r#"
        [upstreams.a]
        tier = "cloud"
        base_url = "https://a.example/v1"
        auth_header = "bad header"
        api_key_env = "A_KEY"
        query = { "" = "x" }
        anthropic_version = "2023-06-01"
        [upstreams.b]
        tier = "cloud"
        base_url = "https://b.example/v1"
        auth_header = "api-key"
        headers = { "Content-Type" = "text/plain", "X-Ok" = "yes" }
        [upstreams.c]
        tier = "cloud"
        base_url = "https://c.example/v1"
        api_key_env = "C_KEY"
        auth_header = "api-key"
        headers = { "api-key" = "literal" }
        [upstreams.d]
        tier = "cloud"
        kind = "anthropic"
        max_tokens_default = 0
        headers = { "anthropic-version" = "2023-01-01", "x-api-key" = "literal" }
        api_key_env = "D_KEY"
        [upstreams.e]
        tier = "cloud"
        kind = "gemini"
        base_url = "https://e.example/v1"
        max_tokens_default = 10
    "#;
    let problems = match tierwise::config::load_from_str(toml, &|_| None) {
        Err(tierwise::config::ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {:?}", other.map(|_| ())),
    };
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for (path, says) in [
        ("upstreams.a.auth_header", "not a valid header name"),
        ("upstreams.a.query", "empty name"),
        ("upstreams.a.anthropic_version", "only for kind = \"anthropic\""),
        ("upstreams.b.auth_header", "no key to send"),
        ("upstreams.b.headers.Content-Type", "set by tierwise itself"),
        ("upstreams.c.headers.api-key", "the API key from api_key_env is sent in this header"),
        ("upstreams.d.max_tokens_default", "must be greater than 0"),
        ("upstreams.d.headers.anthropic-version", "anthropic_version"),
        ("upstreams.d.headers.x-api-key", "the API key from api_key_env"),
        ("upstreams.e.kind", "unknown kind \"gemini\" (hint: supported: openai, anthropic)"),
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(&format!("{path}: ")) && t.contains(says)),
            "no problem at {path} saying {says:?}; got:\n{}",
            text.join("\n")
        );
    }
    assert!(!text.iter().any(|t| t.contains("X-Ok")), "a valid header is no problem: {text:?}");
    assert_eq!(problems.len(), 10, "{}", text.join("\n"));
}
