// figment::Jail dictates the closure type, whose error (figment::Error) is large.
#![expect(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment::Error, which is large; these are tests"
)]

use std::path::Path;

use figment::Jail;

use super::*;

fn env(jail_env: &str) -> Option<String> {
    std::env::var(jail_env).ok()
}

fn problems_of(toml: &str) -> Vec<Problem> {
    match load_from_str(toml, &|_| None) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected validation problems, got: {other}"),
        Ok(_) => panic!("expected validation problems, the config was accepted"),
    }
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn reports_every_problem_at_once_with_paths_and_hints() {
    let problems = problems_of(
        r#"
        [server]
        listen = "localhost"
        [upstreams.local]
        tier = "edge"
        base_url = "not a url"
        [upstreams.cloud]
        base_url = "ftp://example.com"
        api_key_env = "sk-abc-123"
        [models]
        small = { upstream = "lcoal" }
        big = { upstream = "cloud" }
        [tasks.chat]
        chain = ["small", "gtp", "small"]
        [tasks.empty]
        chain = []
        [tasks.big]
        chain = ["big"]
        "#,
    );
    let found = paths(&problems);
    for expected in [
        "server.listen",
        "upstreams.local.tier",
        "upstreams.local.base_url",
        "upstreams.cloud.tier",
        "upstreams.cloud.base_url",
        "upstreams.cloud.api_key_env",
        "models.small.upstream",
        "tasks.chat.chain[1]",
        "tasks.chat.chain[2]",
        "tasks.empty.chain",
        "tasks.big",
    ] {
        assert!(found.contains(&expected), "no problem at {expected}; got {found:?}");
    }
    let typo = problems.iter().find(|p| p.path == "models.small.upstream").unwrap();
    assert_eq!(typo.message, "unknown upstream \"lcoal\"");
    assert_eq!(typo.hint.as_deref(), Some("known upstreams: cloud, local"));
    let chain = problems.iter().find(|p| p.path == "tasks.chat.chain[1]").unwrap();
    assert!(chain.to_string().contains("known models: big, small"), "{chain}");
}

#[test]
fn unknown_keys_and_wrong_types_are_errors_naming_the_key() {
    for (toml, key) in [
        ("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "listen_addr"),
        ("[upstreams.a]\ntier = \"local\"\nbase_url = \"http://x/v1\"\ntimeout = 5\n", "timeout"),
        ("[server]\nbody_limit_bytes = \"big\"\n", "body_limit_bytes"),
        ("[bogus]\nx = 1\n", "bogus"),
    ] {
        match load_from_str(toml, &|_| None) {
            Err(err @ ConfigError::Syntax { .. }) => assert!(err.to_string().contains(key), "{err}"),
            Err(other) => panic!("{toml}: expected a syntax error, got {other}"),
            Ok(_) => panic!("{toml}: accepted"),
        }
    }
}

#[test]
fn a_file_is_layered_under_environment_variables() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "tierwise.toml",
            r#"
            [server]
            listen = "127.0.0.1:4141"
            [upstreams.local]
            tier = "local"
            base_url = "http://127.0.0.1:8080/v1"
            [models.small]
            upstream = "local"
            [tasks.chat]
            chain = ["small"]
            "#,
        )?;
        jail.set_env("TIERWISE_SERVER__LISTEN", "0.0.0.0:9999");
        jail.set_env("TIERWISE_AUTH__ALLOW_UNAUTHENTICATED_NETWORK", "true");
        jail.set_env("TIERWISE_UPSTREAMS__LOCAL__BASE_URL", "http://llama-swap:8080/v1");
        jail.set_env("TIERWISE_UPSTREAMS__LOCAL__TIMEOUT_MS", "1234");
        // Not config: the file's own name and a client key variable.
        jail.set_env("TIERWISE_CONFIG", "tierwise.toml");
        jail.set_env("TIERWISE_KEY_DE_TEAM", "secret");
        let config = load(Some(Path::new("tierwise.toml")), &env).map_err(|e| e.to_string())?;
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9999");
        let local = &config.upstreams["local"];
        assert_eq!(local.base_url.as_str(), "http://llama-swap:8080/v1");
        assert_eq!(local.timeout.as_millis(), 1234);
        assert_eq!(config.source, ConfigSource::File("tierwise.toml".into()));
        assert!(config.auth.allow_unauthenticated_network);
        Ok(())
    });
}

#[test]
fn a_missing_file_names_its_path() {
    let err = load(Some(Path::new("/nonexistent/tierwise.toml")), &|_| None).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tierwise.toml"), "{err}");
}

#[test]
fn without_a_file_the_built_in_default_runs_on_the_local_model() {
    Jail::expect_with(|_| {
        let config = load(None, &|_| None).map_err(|e| e.to_string())?;
        assert_eq!(config.source, ConfigSource::BuiltIn);
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:4141");
        assert_eq!(config.upstreams["local"].base_url.as_str(), "http://127.0.0.1:8080/v1");
        assert_eq!(config.tasks["chat"].chain, vec!["smollm2"]);
        assert!(!config.upstreams.contains_key("openai"));
        Ok(())
    });
}

#[test]
fn the_built_in_default_adds_openai_when_its_key_is_set() {
    let with_key = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test-value".to_string());
    let config = load(None, &with_key).unwrap();
    assert_eq!(config.tasks["chat"].chain, vec!["smollm2", "gpt"]);
    let openai = &config.upstreams["openai"];
    assert_eq!(openai.tier, crate::policy::Tier::Cloud);
    assert_eq!(openai.api_key.as_ref().map(Secret::expose), Some("sk-test-value"));
    assert!(!format!("{config:?}").contains("sk-test-value"), "Debug must not show keys");
    assert!(!config.summary().contains("sk-test-value"));
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = load_from_str(
        "[upstreams.a]\ntier = \"server\"\nbase_url = \"http://gpu.lan:8000/v1\"\n[models.m]\nupstream = \"a\"\n",
        &|_| None,
    )
    .unwrap();
    assert_eq!(config.server.body_limit_bytes, 16 * 1024 * 1024);
    assert_eq!(config.server.shutdown_grace.as_millis(), 30_000);
    let a = &config.upstreams["a"];
    assert_eq!((a.connect_timeout.as_millis(), a.first_byte_timeout.as_millis()), (2_000, 120_000));
    assert_eq!(config.models["m"].name, "m", "the upstream name defaults to the alias");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tierwise.toml");
    let config = load(Some(&path), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tasks.contains_key("companion.chat"));
    assert!(config.summary().contains("OPENAI_API_KEY (NOT SET"));
}

#[test]
fn a_network_listen_without_auth_is_refused_unless_allowed() {
    let base = "[upstreams.a]\ntier = \"local\"\nbase_url = \"http://x/v1\"\n";
    let problems = problems_of(&format!("[server]\nlisten = \"0.0.0.0:4141\"\n{base}"));
    assert_eq!(paths(&problems), ["server.listen"]);
    assert!(problems[0].hint.as_deref().unwrap().contains("auth.allow_unauthenticated_network"));
    let allowed = format!("[server]\nlisten = \"0.0.0.0:4141\"\n[auth]\nallow_unauthenticated_network = true\n{base}");
    assert!(load_from_str(&allowed, &|_| None).is_ok());
}

#[test]
fn keys_and_profiles_are_checked() {
    let problems = problems_of(
        r#"
        [upstreams.a]
        tier = "local"
        base_url = "http://x/v1"
        [models.m]
        upstream = "a"
        [tasks.t]
        chain = ["m"]
        [profiles.team]
        allowed_tiers = ["local", "orbit"]
        task_overrides = { "nope" = "cloud", "t" = "space" }
        locale = "fr"
        [auth]
        required = true
        [[keys]]
        key_env = "UNSET_TEAM_KEY"
        profile = "team"
        [[keys]]
        key_sha256 = "abc"
        profile = "team"
        [[keys]]
        key_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        profile = "ghost"
        [[keys]]
        profile = "team"
        "#,
    );
    let found = paths(&problems);
    for expected in [
        "profiles.team.allowed_tiers[1]",
        "profiles.team.task_overrides.\"nope\"",
        "profiles.team.task_overrides.\"t\"",
        "profiles.team.locale",
        "keys[0].key_env",
        "keys[1].key_sha256",
        "keys[2].profile",
        "keys[3]",
    ] {
        assert!(found.contains(&expected), "no problem at {expected}; got {found:?}");
    }
}

#[test]
fn a_sensitive_task_that_could_never_run_is_a_problem() {
    let problems = problems_of(
        "[upstreams.c]\ntier = \"cloud\"\nbase_url = \"https://x/v1\"\n[models.m]\nupstream = \"c\"\n\
         [tasks.diary]\nchain = [\"m\"]\ncontent_class = \"sensitive\"\n",
    );
    assert_eq!(paths(&problems), ["tasks.diary"]);
}

#[test]
fn client_keys_are_kept_as_digests_only() {
    let config = load_from_str(
        "[upstreams.a]\ntier = \"local\"\nbase_url = \"http://x/v1\"\n[profiles.team]\n[[keys]]\nkey_env = \"TEAM_KEY\"\nprofile = \"team\"\nadmin = true\n",
        &|name| (name == "TEAM_KEY").then(|| "tw-team-secret".to_string()),
    )
    .unwrap();
    assert_eq!(config.auth.keys[0].digest, sha256(b"tw-team-secret"));
    assert!(config.auth.keys[0].admin);
    assert!(!format!("{config:?}").contains("tw-team-secret"));
}

#[test]
fn a_native_responses_upstream_must_be_able_to_serve_it() {
    let problems = problems_of(
        "[upstreams.a]\ntier = \"cloud\"\nkind = \"anthropic\"\nresponses = \"native\"\n\
         [upstreams.b]\ntier = \"cloud\"\nbase_url = \"https://x/v1\"\nresponses = \"yes\"\n\
         [models.m]\nupstream = \"a\"\n[models.n]\nupstream = \"b\"\n",
    );
    assert_eq!(paths(&problems), ["upstreams.a.responses", "upstreams.b.responses"]);
    assert!(problems[1].to_string().contains("translate (the default), native"), "{}", problems[1]);
}

#[test]
fn state_is_validated_with_every_problem_named() {
    let problems = problems_of(
        r#"
        [state]
        backend = "redis"
        url = "redis://user:hunter2@redis:6379/0"
        password_env = "UNSET_REDIS_PASSWORD"
        tls_ca_file = "/nonexistent/ca.pem"
        on_error = "retry"
        command_timeout_ms = 0
        "#,
    );
    let found = paths(&problems);
    for path in ["state.url", "state.password_env", "state.tls_ca_file", "state.on_error", "state.command_timeout_ms"] {
        assert!(found.contains(&path), "{path} not reported: {problems:?}");
    }
    let url = problems.iter().find(|p| p.path == "state.url").map(|p| p.to_string()).unwrap_or_default();
    assert!(url.contains("holds credentials") && !url.contains("hunter2"), "{url}");

    let problems = problems_of("[state]\nbackend = \"memory\"\nurl = \"redis://redis:6379/0\"\n");
    assert_eq!(paths(&problems), ["state.url"], "a Redis key without backend = \"redis\"");
    let problems = problems_of("[state]\nbackend = \"etcd\"\n");
    assert_eq!(paths(&problems), ["state.backend"]);
    let problems = problems_of("[state]\nbackend = \"redis\"\nurl = \"http://redis:6379\"\n");
    assert_eq!(paths(&problems), ["state.url"]);
}

#[test]
fn a_redis_state_takes_its_password_from_the_environment() {
    let toml = "[state]\nbackend = \"redis\"\nurl = \"rediss://redis:6380/1\"\npassword_env = \"REDIS_PW\"\non_error = \"deny\"\n";
    let config = load_from_str(toml, &|name| (name == "REDIS_PW").then(|| "s3cret".to_string())).unwrap();
    let StateConfig::Redis(redis) = &config.state else { panic!("not Redis: {:?}", config.state) };
    assert_eq!(redis.url, "rediss://redis:6380/1");
    assert_eq!(redis.password.as_ref().map(Secret::expose), Some("s3cret"));
    assert!(!format!("{:?}", config.state).contains("s3cret"), "the password never shows in Debug");
    assert_eq!((redis.on_error, redis.command_timeout.as_millis()), (OnStateError::Deny, 250));
    assert_eq!(redis.key_prefix, "tierwise:");
    assert_eq!(load_from_str("", &|_| None).unwrap().state, StateConfig::Memory, "memory by default");
}

#[test]
fn tracing_takes_the_otel_variables_for_what_the_file_leaves_unset() {
    let env = |name: &str| {
        match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318/"),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-team=a%20b,authorization=Bearer%20t"),
            "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio"),
            "OTEL_TRACES_SAMPLER_ARG" => Some("0.25"),
            "OTEL_SERVICE_NAME" => Some("edge-proxy"),
            "HONEYCOMB" => Some("hc-key"),
            _ => None,
        }
        .map(str::to_string)
    };
    let config = load_from_str("", &env).unwrap();
    let tracing = config.tracing.expect("OTEL_EXPORTER_OTLP_ENDPOINT turns traces on");
    assert_eq!(tracing.endpoint, "http://collector:4318/v1/traces");
    assert_eq!((tracing.sample_ratio, tracing.service_name.as_str()), (0.25, "edge-proxy"));
    let headers: Vec<(&str, &str)> = tracing.headers.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
    assert_eq!(headers, [("x-team", "a b"), ("authorization", "Bearer t")]);

    let toml = "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 1.0\nheaders = { \"x-honeycomb-team\" = \"HONEYCOMB\" }\n";
    let tracing = load_from_str(toml, &env).unwrap().tracing.unwrap();
    assert_eq!(tracing.endpoint, "http://127.0.0.1:4318/v1/traces", "the file wins");
    assert_eq!(tracing.sample_ratio, 1.0);
    assert_eq!(tracing.headers.len(), 1, "the file's headers replace OTEL_EXPORTER_OTLP_HEADERS");
    assert!(load_from_str("", &|_| None).unwrap().tracing.is_none(), "no endpoint: no traces");

    let problems = problems_of(
        "[tracing]\notlp_endpoint = \"collector:4318\"\nprotocol = \"thrift\"\nsample_ratio = 2.0\nheaders = { \"x-k\" = \"UNSET\" }\n",
    );
    for path in ["tracing.otlp_endpoint", "tracing.protocol", "tracing.sample_ratio", "tracing.headers.x-k"] {
        assert!(paths(&problems).contains(&path), "{path} not reported: {problems:?}");
    }
    assert_eq!(paths(&problems_of("[tracing]\nsample_ratio = 0.5\n")), ["tracing.otlp_endpoint"]);
    let grpc_tls = "[tracing]\notlp_endpoint = \"https://collector:4317\"\nprotocol = \"grpc\"\n";
    assert_eq!(paths(&problems_of(grpc_tls)), ["tracing.otlp_endpoint"], "gRPC over TLS is not built in");
    let traces_only = |name: &str| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4317".to_string()),
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" => Some("grpc".to_string()),
        _ => None,
    };
    let tracing = load_from_str("", &traces_only).unwrap().tracing.unwrap();
    assert_eq!((tracing.protocol, tracing.endpoint.as_str()), (OtlpProtocol::Grpc, "http://collector:4317"));
}
