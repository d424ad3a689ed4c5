//! The privacy invariant, second pass, as a property: personal data of every family and
//! variant, planted in a random field of a random request — or in what the local model
//! (or a local judge) says — never reaches a `server` or `cloud` double, whatever the
//! chain, the verifier (checks, judges, confidence, consistency samples, self-checks),
//! the stream flag and the `local_output` policy. Counted from the
//! bytes the doubles received, by the planted needle itself, not by the detector. The
//! task caches its answers in a `server`-tier Redis and every request is sent twice (the
//! second may be a hit): no value Redis holds has the needle either.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::bodies::{answer, streaming};
use crate::support::redis::RedisServer;
use crate::support::*;

/// `(text as planted, digits that identify it when it is a number)`.
pub(crate) const NEEDLES: &[(&str, &str)] = &[
    ("needle.p3@example.org", ""),
    ("ｎｅｅｄｌｅ．ｐ４＠example.org", ""),
    ("nееdlе.p5@ехаmple.org", ""),
    ("needle\u{200b}.p6@exam\u{00ad}ple.org", ""),
    ("needle.p7 [at] example [dot] org", ""),
    ("de89 3704 0044 0532 0130 00", "370400440532013000"),
    ("GB82 WEST 1234 5698 7654 32", "12345698765432"),
    ("４１１１ １１１１ １１１１ １１１１", ""),
    ("room 12 5500 0000 0000 0004", "5500000000000004"),
    ("٤١١١ ١١١١ ١١١١ ١١١١", ""),
    ("030 123 45 67", "301234567"),
    ("415 555 0132", "4155550132"),
    ("Reachable 9-17 +49 30 1234567", "49301234567"),
    ("(0171) 234 5678", "1712345678"),
    ("+44 20 7946 0958", "442079460958"),
];

#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the request, at this field (see `plant`).
    Field(usize),
    /// In the local model's answer.
    LocalAnswer,
    /// In a local judge's feedback.
    JudgeFeedback,
}

#[derive(Debug, Clone, Copy)]
enum Verifier {
    None,
    CloudJudge {
        accept: bool,
    },
    LocalJudge,
    /// `json_schema`, whose feedback quotes the answer.
    Schema,
    /// `consistency`, whose samples disagree and whose feedback quotes them.
    Consistency,
    /// `self_check`, asking the local model again.
    SelfCheck,
    /// `confidence`, over an answer without logprobs (a verifier error).
    Confidence,
}

#[derive(Debug, Clone)]
struct Case {
    needle: usize,
    place: Place,
    verifier: Verifier,
    stream: bool,
    server_step: bool,
    redact: bool,
}

pub(crate) const FIELDS: usize = 10;

fn case() -> impl Strategy<Value = Case> {
    let place = prop_oneof![
        3 => (0..FIELDS).prop_map(Place::Field),
        2 => Just(Place::LocalAnswer),
        1 => Just(Place::JudgeFeedback),
    ];
    let verifier = prop_oneof![
        Just(Verifier::None),
        any::<bool>().prop_map(|accept| Verifier::CloudJudge { accept }),
        Just(Verifier::LocalJudge),
        Just(Verifier::Schema),
        Just(Verifier::Consistency),
        Just(Verifier::SelfCheck),
        Just(Verifier::Confidence),
    ];
    (0..NEEDLES.len(), place, verifier, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(needle, place, verifier, stream, server_step, redact)| Case {
            needle,
            place,
            verifier,
            stream,
            server_step,
            redact,
        },
    )
}

/// The request, with `needle` at field `field` (or nowhere).
pub(crate) fn plant(field: Option<usize>, needle: &str, stream: bool) -> Value {
    let mut body =
        json!({"model": "t", "stream": stream, "messages": [{"role": "user", "content": "Who handles refunds?"}]});
    let Some(field) = field else { return body };
    let escaped = needle.replace('@', "%40").replace(' ', "%20");
    match field {
        0 => body["messages"][0]["content"] = json!(format!("Contact {needle} today")),
        1 => body["user"] = json!(needle),
        2 => body["metadata"] = json!({"customer": needle}),
        3 => {
            body["tools"] =
                json!([{"type": "function", "function": {"name": "f", "description": format!("for {needle}")}}])
        }
        4 => body["messages"][0]["name"] = json!(needle),
        5 => body["stop"] = json!([needle]),
        6 => {
            body["messages"] = json!([{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": {"to": needle}}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}, {"role": "user", "content": "and?"}]);
        }
        7 => {
            let (a, b) = needle.split_at(needle.char_indices().nth(needle.chars().count() / 2).unwrap().0);
            body["messages"][0]["content"] =
                json!([{"type": "text", "text": format!("see {a}")}, {"type": "text", "text": b}]);
        }
        8 => {
            body["messages"][0]["content"] = json!([{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": format!("https://img.example/a.png?who={escaped}")}}]);
        }
        _ => {
            body["response_format"] =
                json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"description": needle}}})
        }
    }
    body
}

/// Whether `received` holds `needle`: as planted, or, for a number, its digits — in the
/// raw bytes, in any one string of the body, or in all its strings joined (a needle
/// split across two content parts).
fn holds(received: &crate::support::upstream::Received, needle: (&str, &str)) -> bool {
    let (text, digits) = needle;
    let mut texts = strings(&received.body);
    texts.push(values(&received.body).concat());
    texts.push(String::from_utf8_lossy(&received.raw).into_owned());
    let digits_of = |s: &String| s.chars().filter(char::is_ascii_digit).collect::<String>();
    texts.iter().any(|s| s.contains(text) || (!digits.is_empty() && digits_of(s).contains(digits)))
}

/// The string values of a body in order, without the API's own words (`type`, `role`):
/// what a needle split across two content parts is, joined.
fn values(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(values).collect(),
        Value::Object(map) => {
            map.iter().filter(|(k, _)| !["type", "role"].contains(&k.as_str())).flat_map(|(_, v)| values(v)).collect()
        }
        _ => Vec::new(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.iter().flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v))).collect(),
        _ => Vec::new(),
    }
}

/// Runs one case; returns (requests above local that held the needle, status).
async fn run(case: &Case) -> (usize, u16) {
    let needle = NEEDLES[case.needle];
    let said = |text: String| if case.stream { streaming(&text) } else { answer(&text) };
    let local_text = match case.place {
        Place::LocalAnswer if matches!(case.verifier, Verifier::Schema) => format!("{{\"age\": \"{}\"}}", needle.0),
        Place::LocalAnswer => format!("Contact {} today.", needle.0),
        _ => "Ask the front desk.".to_string(),
    };
    // Samples (`seed`, `n`) and self-checks are JSON requests of their own: samples say
    // the answer differently each time, a self-check says No.
    let main_answer = said(local_text.clone());
    let local = UpstreamDouble::start(Behaviour::Reply(Responder::new(move |body: &Value| {
        let asked = body["messages"].to_string();
        if asked.contains("Correct?") {
            answer("No")
        } else if let Some(seed) = body.get("seed") {
            answer(&format!("{local_text} Desk {seed}."))
        } else if body.get("n").is_some() {
            answer(&format!("{local_text} Any desk."))
        } else {
            main_answer.clone()
        }
    })))
    .await;
    let server = UpstreamDouble::start(said("The server's answer.".into())).await;
    let cloud = UpstreamDouble::start(said("The cloud's answer.".into())).await;
    let verdict = match (case.place, case.verifier) {
        (Place::JudgeFeedback, _) | (_, Verifier::LocalJudge) => {
            format!("{{\"accept\": false, \"feedback\": \"Point them to {} instead.\"}}", needle.0)
        }
        (_, Verifier::CloudJudge { accept: true }) => "{\"accept\": true}".to_string(),
        _ => "{\"accept\": false, \"feedback\": \"Be more specific.\"}".to_string(),
    };
    let judge = UpstreamDouble::start(answer(&verdict)).await;
    let judge_tier = match case.verifier {
        Verifier::CloudJudge { .. } => "cloud",
        _ => "local",
    };
    let verify = match (case.place, case.verifier) {
        (Place::JudgeFeedback, _) | (_, Verifier::LocalJudge | Verifier::CloudJudge { .. }) => {
            "checks = [\"non_empty\"]\njudge = \"judge-model\""
        }
        (_, Verifier::Schema) => "checks = [\"json_schema\"]",
        (_, Verifier::Consistency) => "[tasks.t.verify.consistency]\nsamples = 3",
        (_, Verifier::SelfCheck) => "[tasks.t.verify.self_check]",
        (_, Verifier::Confidence) => "[tasks.t.verify.confidence]",
        (_, Verifier::None) => "checks = [\"max_chars\"]\nmax_chars = 5",
    };
    let mut upstreams = vec![("local", "local", local.base_url()), ("judge", judge_tier, judge.base_url())];
    let mut chain = vec!["local-model"];
    if case.server_step {
        upstreams.push(("lan", "server", server.base_url()));
        chain.push("lan-model");
    }
    upstreams.push(("vendor", "cloud", cloud.base_url()));
    chain.push("vendor-model");
    let upstreams: Vec<(&str, &str, &str)> = upstreams.iter().map(|(n, t, u)| (*n, *t, u.as_str())).collect();
    let policy = if case.redact { "redact" } else { "reclassify" };
    let redis = RedisServer::start().await;
    let extra = format!(
        "[tasks.t.verify]\n{verify}\n[detect]\nlocal_output = \"{policy}\"\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let toml = config_for(&upstreams, &[("t", &chain)], &extra)
        .replace("[tasks.\"t\"]\n", "[tasks.\"t\"]\ncache = { ttl_s = 60, deterministic_only = false }\n");
    let app = TestApp::start(&toml).await;

    let field = match case.place {
        Place::Field(i) => Some(i),
        _ => None,
    };
    let mut body = plant(field, needle.0, case.stream);
    if matches!(case.verifier, Verifier::Schema) {
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "a",
            "schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}}});
        if field == Some(FIELDS - 1) {
            body = plant(Some(0), needle.0, case.stream);
        }
    }
    let response = app.chat(body.clone()).await;
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    // Once more, after the first answer's cache write: a hit, or a second run.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let _ = app.chat(body).await.bytes().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let in_redis = cached_values(&redis).await.iter().filter(|v| holds(v, needle)).count();
    let mut above_local: Vec<&UpstreamDouble> = vec![&server, &cloud];
    if judge_tier == "cloud" {
        above_local.push(&judge);
    }
    let leaked = above_local.iter().flat_map(|d| d.received()).filter(|r| holds(r, needle)).count();
    (leaked + in_redis, status)
}

/// Every response-cache value in Redis, as the bytes and the answer it holds.
async fn cached_values(redis: &RedisServer) -> Vec<crate::support::upstream::Received> {
    let mut connection = redis.connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut connection).await.unwrap();
    let mut values = Vec::new();
    for key in keys.iter().filter(|k| k.contains(":cache:")) {
        let value: String = ::redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap();
        let entry: Value = serde_json::from_str(&value).unwrap_or(Value::Null);
        let body = entry["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        values.push(crate::support::upstream::Received {
            uri: http::Uri::from_static("/"),
            headers: http::HeaderMap::new(),
            body,
            raw: bytes::Bytes::from(value),
            at: std::time::Instant::now(),
        });
    }
    values
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_personal_data_from_any_field_or_any_local_output_reaches_a_server_or_cloud_upstream(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (leaked, status) = runtime.block_on(run(&case));
        prop_assert!([200, 502, 503].contains(&status), "unexpected status {status}");
        prop_assert_eq!(leaked, 0, "the needle reached a server or cloud upstream, or the server-tier cache");
    }
}

/// The property can fail: with the detector off, a planted needle does go up.
#[tokio::test]
async fn the_needle_count_sees_a_leak_when_there_is_one() {
    let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let cloud = UpstreamDouble::start(answer("ok")).await;
    let toml = config_for(
        &[("local", "local", &local.base_url()), ("vendor", "cloud", &cloud.base_url())],
        &[("t", &["local-model", "vendor-model"])],
        "[detect]\nmode = \"off\"\n",
    );
    let app = TestApp::start(&toml).await;
    // Every field but the percent-encoded URL, where the needle is written differently.
    let fields: Vec<usize> = (0..FIELDS).filter(|&f| f != 8).collect();
    for (i, needle) in NEEDLES.iter().enumerate() {
        let field = fields[i % fields.len()];
        app.chat(plant(Some(field), needle.0, false)).await;
        let received = cloud.received();
        assert!(holds(received.last().unwrap(), *needle), "{needle:?} at field {field}");
    }
}

/// The Redis count can fail too: a Redis declared `local` may hold a sensitive answer,
/// and the count finds the needle in it.
#[tokio::test]
async fn the_needle_count_sees_a_cached_answer_when_redis_may_hold_one() {
    let needle = NEEDLES[0];
    let local = UpstreamDouble::start(answer(&format!("Write to {}.", needle.0))).await;
    let redis = RedisServer::start().await;
    let state = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"\ncache_tier = \"local\"\n", redis.url());
    let toml = config_for(&[("local", "local", &local.base_url())], &[("t", &["local-model"])], &state)
        .replace("[tasks.\"t\"]\n", "[tasks.\"t\"]\ncache = { ttl_s = 60, deterministic_only = false }\n");
    let app = TestApp::start(&toml).await;
    let _ = app.chat(plant(Some(0), needle.0, false)).await.bytes().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(cached_values(&redis).await.iter().filter(|v| holds(v, needle)).count(), 1);
}
