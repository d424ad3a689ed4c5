//! The privacy invariant as a property: over random configs, profiles, classes,
//! overrides and upstream behaviours (answer, fail, block, stall, unreachable), no
//! sensitive request ever produces a call to a `server` or `cloud` upstream — counted
//! by the upstream doubles themselves, not read off the plan.

use proptest::prelude::*;
use serde_json::json;

use crate::support::*;

#[derive(Debug, Clone, Copy)]
enum Behave {
    Answer,
    Fail,
    Block,
    Stall,
    Unreachable,
}

#[derive(Debug, Clone)]
struct Case {
    /// (tier index 0=local 1=server 2=cloud, behaviour) per chain step.
    steps: Vec<(usize, Behave)>,
    allowed: [bool; 3],
    consent: bool,
    override_tier: Option<usize>,
    fallback: bool,
    min_tier: usize,
    task_sensitive: bool,
    rules: bool,
    header: Option<&'static str>,
    body_class: Option<&'static str>,
    pii: bool,
    stream: bool,
}

const TIERS: [&str; 3] = ["local", "server", "cloud"];
const MIN_TIERS: [&str; 4] = ["none", "local", "server", "cloud"];

fn behave() -> impl Strategy<Value = Behave> {
    prop_oneof![4 => Just(Behave::Answer), 3 => Just(Behave::Fail), 1 => Just(Behave::Block), 1 => Just(Behave::Stall), 2 => Just(Behave::Unreachable)]
}

fn case() -> impl Strategy<Value = Case> {
    let class = || prop_oneof![Just(None), Just(Some("normal")), Just(Some("sensitive"))];
    (
        prop::collection::vec((0usize..3, behave()), 1..5),
        prop::array::uniform3(any::<bool>()),
        any::<bool>(),
        prop::option::weighted(0.3, 0usize..3),
        any::<bool>(),
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        (class(), class()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                steps,
                allowed,
                consent,
                override_tier,
                fallback,
                min_tier,
                task_sensitive,
                rules,
                (header, body_class),
                pii,
                stream,
            )| Case {
                steps,
                allowed,
                consent,
                override_tier,
                fallback,
                min_tier,
                task_sensitive,
                rules,
                header,
                body_class,
                pii,
                stream,
            },
        )
}

impl Case {
    fn sensitive(&self) -> bool {
        self.task_sensitive || self.header == Some("sensitive") || self.body_class == Some("sensitive") || self.pii
    }
}

/// Runs one case; returns (calls that left the machine, status).
async fn run(case: &Case) -> Option<(usize, u16)> {
    let mut doubles = Vec::new();
    let mut toml = String::new();
    let mut chain = Vec::new();
    for (i, (tier, behave)) in case.steps.iter().enumerate() {
        let base_url = match behave {
            Behave::Unreachable => format!("http://{}/v1", dead_address().await),
            other => {
                let behaviour = match other {
                    Behave::Answer if case.stream => Behaviour::sse("openai/chat_stream_usage.sse"),
                    Behave::Answer => Behaviour::json("openai/chat_completion.json"),
                    Behave::Fail => Behaviour::status(503, "openai/error_500_server.json"),
                    Behave::Block => Behaviour::Status(
                        400,
                        r#"{"error":{"message":"blocked by the safety system","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#.into(),
                    ),
                    _ => Behaviour::Stall,
                };
                let double = UpstreamDouble::start(behaviour).await;
                let url = double.base_url();
                doubles.push((*tier, double));
                url
            }
        };
        toml.push_str(&format!(
            "[upstreams.u{i}]\ntier = \"{}\"\nbase_url = \"{base_url}\"\nfirst_byte_timeout_ms = 150\nconnect_timeout_ms = 150\n[models.m{i}]\nupstream = \"u{i}\"\n",
            TIERS[*tier]
        ));
        chain.push(format!("\"m{i}\""));
    }
    toml.push_str(&format!(
        "[tasks.t]\nchain = [{}]\nmin_tier = \"{}\"\ncontent_class = \"{}\"\n",
        chain.join(", "),
        MIN_TIERS[case.min_tier],
        if case.task_sensitive { "sensitive" } else { "normal" }
    ));
    if case.rules {
        toml.push_str("rules = { reply = \"rules\" }\n");
    }
    let allowed: Vec<String> =
        TIERS.iter().zip(case.allowed).filter(|(_, on)| *on).map(|(t, _)| format!("\"{t}\"")).collect();
    toml.push_str(&format!(
        "[profiles.default]\nallowed_tiers = [{}]\ncloud_consent = {}\nfallback_to_rules_on_error = {}\n",
        allowed.join(", "),
        case.consent,
        case.fallback
    ));
    if let Some(t) = case.override_tier {
        toml.push_str(&format!("task_overrides = {{ \"t\" = \"{}\" }}\n", TIERS[t]));
    }
    // Configs validation refuses (e.g. a sensitive task with no local step) never run.
    tierwise::config::load_from_str(&toml, &|_| None).ok()?;
    let app = TestApp::start(&toml).await;

    let text = if case.pii { "please email jo@example.net the report" } else { "summarise the report" };
    let mut body = json!({"model": "t", "stream": case.stream, "messages": [{"role": "user", "content": text}]});
    if let Some(class) = case.body_class {
        body["metadata"] = json!({"content_class": class});
    }
    let mut request = client().post(app.url("/v1/chat/completions")).json(&body);
    if let Some(class) = case.header {
        request = request.header("x-tierwise-content-class", class);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    let off_machine = doubles.iter().filter(|(tier, _)| *tier > 0).map(|(_, d)| d.calls()).sum();
    Some((off_machine, status))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_sensitive_request_ever_reaches_a_server_or_cloud_upstream(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if let Some((off_machine, status)) = runtime.block_on(run(&case)) {
            prop_assert!([200, 400, 403, 502, 503, 504].contains(&status), "unexpected status {status}");
            if case.sensitive() {
                prop_assert_eq!(off_machine, 0, "a sensitive request left the machine");
            }
        }
    }
}
