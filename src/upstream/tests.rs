use super::*;

#[test]
fn joins_under_the_base_path() {
    let base = reqwest::Url::parse("http://127.0.0.1:8080/v1/").unwrap();
    assert_eq!(join_url(&base, "chat/completions").unwrap().as_str(), "http://127.0.0.1:8080/v1/chat/completions");
    let with_query = reqwest::Url::parse("https://x.example/openai/v1?api-version=2024").unwrap();
    assert_eq!(
        join_url(&with_query, "chat/completions").unwrap().as_str(),
        "https://x.example/openai/v1/chat/completions?api-version=2024"
    );
}

#[test]
fn endpoints_follow_the_kind_and_carry_the_query() {
    let toml = r#"
        [upstreams.azure]
        tier = "cloud"
        base_url = "https://r.openai.azure.com/openai/deployments/d?x=1"
        query = { "api-version" = "2024-10-21", "a b" = "c&d" }
        [upstreams.claude]
        tier = "cloud"
        kind = "anthropic"
    "#;
    let config = crate::config::load_from_str(toml, &|_| None).unwrap();
    let url = |name: &str| endpoint(&config.upstreams[name], None).unwrap().to_string();
    assert_eq!(
        url("azure"),
        "https://r.openai.azure.com/openai/deployments/d/chat/completions?x=1&a+b=c%26d&api-version=2024-10-21"
    );
    assert_eq!(url("claude"), "https://api.anthropic.com/v1/messages");
}

#[test]
fn the_key_goes_in_its_header_and_anthropic_gets_its_version() {
    let toml = r#"
        [upstreams.azure]
        tier = "cloud"
        base_url = "https://r.openai.azure.com/openai/deployments/d"
        api_key_env = "K"
        auth_header = "api-key"
        [upstreams.claude]
        tier = "cloud"
        kind = "anthropic"
        api_key_env = "K"
        anthropic_version = "2024-01-01"
    "#;
    let config = crate::config::load_from_str(toml, &|name| (name == "K").then(|| "secret-key".into())).unwrap();
    let azure = headers(&config.upstreams["azure"]).unwrap();
    assert_eq!(azure["api-key"], "secret-key");
    assert!(azure["api-key"].is_sensitive());
    assert!(azure.get("authorization").is_none());
    let claude = headers(&config.upstreams["claude"]).unwrap();
    assert_eq!(claude["x-api-key"], "secret-key");
    assert_eq!(claude["anthropic-version"], "2024-01-01");
    assert!(claude.get("authorization").is_none());
}
