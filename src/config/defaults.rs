//! The config tierwise runs on when no file is given: llama-server or llama-swap on
//! this machine, and OpenAI as the next tier when `OPENAI_API_KEY` is set (exporting the
//! key counts as cloud consent for the `default` profile).

use super::raw::{RawConfig, RawModel, RawPrice, RawProfile, RawTask, RawUpstream};

pub const LOCAL_BASE_URL: &str = "http://127.0.0.1:8080/v1";

pub fn raw(env: &dyn Fn(&str) -> Option<String>) -> RawConfig {
    let mut config = RawConfig::default();
    config.upstreams.insert(
        "local".into(),
        RawUpstream { tier: Some("local".into()), base_url: Some(LOCAL_BASE_URL.into()), ..RawUpstream::default() },
    );
    config.models.insert(
        "smollm2".into(),
        RawModel { upstream: Some("local".into()), name: Some("smollm2".into()), price: None, serves: None },
    );
    let mut chain = vec!["smollm2".to_string()];
    if env("OPENAI_API_KEY").is_some_and(|k| !k.is_empty()) {
        config.upstreams.insert(
            "openai".into(),
            RawUpstream {
                tier: Some("cloud".into()),
                base_url: Some("https://api.openai.com/v1".into()),
                api_key_env: Some("OPENAI_API_KEY".into()),
                ..RawUpstream::default()
            },
        );
        config.models.insert(
            "gpt".into(),
            RawModel {
                upstream: Some("openai".into()),
                name: Some("gpt-4.1-mini".into()),
                price: Some(RawPrice { input_usd_per_mtok: 0.4, output_usd_per_mtok: 1.6 }),
                serves: None,
            },
        );
        chain.push("gpt".into());
        // Exporting the key is the operator's consent to use it.
        config.profiles.insert("default".into(), RawProfile { cloud_consent: Some(true), ..RawProfile::default() });
    }
    config.tasks.insert("chat".into(), RawTask { chain, ..RawTask::default() });
    config
}
