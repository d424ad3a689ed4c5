//! `tierwise eval`, run as users run it (the binary, a config file, a dataset): exact
//! accounting against doubles whose right and wrong answers are known, the graders and
//! the report end to end with the real SmolLM2 as the local model, and the cache that
//! makes a second run call no model.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

use crate::support::bodies::completion;
use crate::support::llama::LlamaServer;
use crate::support::{fixtures_dir, Behaviour, Responder, UpstreamDouble};

const BIN: &str = env!("CARGO_BIN_EXE_tierwise");

struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tierwise-eval-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Workspace { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn eval(&self, config: &Path, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(BIN);
        command
            .arg("--config")
            .arg(config)
            .arg("eval")
            .args(args)
            .arg("--out")
            .arg(self.dir.join("out"))
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .env("TEST_CLOUD_KEY", "sk-eval-test");
        command.output().await.unwrap()
    }

    fn report(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("out/report.json")).unwrap()).unwrap()
    }

    fn out(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("out").join(name)).unwrap()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `value` is the number `expected`, to rounding.
fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

fn strategy<'a>(report: &'a Value, name: &str) -> &'a Value {
    let all = report["strategies"].as_array().unwrap();
    all.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no strategy {name} in {report:#}"))
}

/// The number `n` of "What is n + n?" in the last user message.
fn question(body: &Value) -> u64 {
    let messages = body["messages"].as_array().unwrap();
    let text = messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap();
    let rest = text.strip_prefix("What is ").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// Ten sums; the weak model is right on 1–6, marks its answer with `####` on 1–4 and 7–8.
fn sums_dataset(workspace: &Workspace) -> PathBuf {
    let lines: String = (1..=10)
        .map(|n| {
            json!({"id": format!("q{n}"), "messages": [{"role": "user", "content": format!("What is {n} + {n}?")}],
                   "expected": 2 * n, "grader": "numeric"})
            .to_string()
                + "\n"
        })
        .collect();
    workspace.write("sums.jsonl", &lines)
}

fn weak_answer(body: &Value) -> Behaviour {
    let n = question(body);
    let sum = if n <= 6 { 2 * n } else { 2 * n + 1 };
    let marked = n <= 4 || (7..=8).contains(&n);
    Behaviour::Json(completion(&if marked { format!("Adding: #### {sum}") } else { format!("It is {sum}.") }, "stop"))
}

fn strong_answer(body: &Value) -> Behaviour {
    Behaviour::Json(completion(&format!("{n} plus {n} makes #### {}", 2 * question(body), n = question(body)), "stop"))
}

fn sums_config(workspace: &Workspace, weak: &UpstreamDouble, strong: &UpstreamDouble) -> PathBuf {
    let toml = format!(
        r#####"[upstreams.local]
tier = "local"
base_url = "{}"

[upstreams.cloud]
tier = "cloud"
base_url = "{}"
api_key_env = "TEST_CLOUD_KEY"

[models.weak]
upstream = "local"
name = "weak-1"

[models.strong]
upstream = "cloud"
name = "strong-1"
price = {{ input_usd_per_mtok = 1.0, output_usd_per_mtok = 2.0 }}

[tasks.sums]
chain = ["weak", "strong"]

[tasks.sums.verify]
checks = ["non_empty", "regex"]
regex = "####"

[profiles.default]
cloud_consent = true
"#####,
        weak.base_url(),
        strong.base_url()
    );
    workspace.write("tierwise.toml", &toml)
}

#[tokio::test]
async fn eval_counts_verdicts_costs_and_calls_exactly() {
    let workspace = Workspace::new("exact");
    let weak = UpstreamDouble::start(Behaviour::Reply(Responder::new(weak_answer))).await;
    let strong = UpstreamDouble::start(Behaviour::Reply(Responder::new(strong_answer))).await;
    let config = sums_config(&workspace, &weak, &strong);
    let dataset = sums_dataset(&workspace);
    let sweep = r#"verify.checks=["non_empty"],["non_empty","regex"]"#;
    let args = [
        "--dataset",
        dataset.to_str().unwrap(),
        "--task",
        "sums",
        "--concurrency",
        "3",
        "--sweep",
        sweep,
        "--target",
        "0.75",
    ];
    let output = workspace.eval(&config, &args).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = workspace.report();

    let weak_alone = strategy(&report, "weak alone");
    assert_eq!((weak_alone["correct"].as_u64(), weak_alone["items"].as_u64()), (Some(6), Some(10)));
    assert_eq!(strategy(&report, "strong alone")["accuracy"], 1.0);
    assert!(
        close(&strategy(&report, "strong alone")["cost_per_1k_requests_usd"], 1000.0 * 19e-6),
        "5 in, 7 out at $1/$2"
    );

    let chain = strategy(&report, "chain");
    assert_eq!(chain["correct"], 8, "6 accepted of which 4 right, 4 escalated to the strong model");
    let stats = &chain["chain"];
    assert_eq!(
        stats["confusion"],
        json!({"accepted_right": 4, "accepted_wrong": 2, "rejected_right": 2, "rejected_wrong": 2, "not_verified": 0})
    );
    assert!(close(&stats["accepted_wrong_share"], 2.0 / 6.0));
    assert!(close(&stats["escalation_rate"], 0.4));
    assert!(close(&stats["quality_gap_recovered"], 0.5), "(0.8 - 0.6) / (1.0 - 0.6)");
    assert!(close(&chain["cost_per_1k_requests_usd"], 400.0 * 19e-6), "four strong calls in ten requests");
    assert_eq!(chain["reached_strongest_tier"], 0.4);
    assert_eq!(chain["answered_by_tier"], json!({"cloud": 0.4, "local": 0.6}));
    assert_eq!(chain["calls_by_tier"], json!({"cloud": 4, "local": 10}));
    let wilson = chain["accuracy_ci95"].as_array().unwrap();
    assert!((wilson[0].as_f64().unwrap() - 0.4902).abs() < 1e-4 && (wilson[1].as_f64().unwrap() - 0.9433).abs() < 1e-4);

    let lenient = strategy(&report, r#"chain verify.checks=["non_empty"]"#);
    assert_eq!((lenient["correct"].as_u64(), lenient["reached_strongest_tier"].as_f64()), (Some(6), Some(0.0)));
    let random = strategy(&report, "random like chain");
    assert_eq!(random["answered_by_tier"], json!({"cloud": 0.4, "local": 0.6}), "the chain's escalation rate");
    assert_eq!(report["target"]["cheapest"], "chain", "the cheapest setting with 75 % of the strong model's accuracy");

    // Each model saw each distinct request once: the chains' first steps and the sweep
    // came from the cache; the strong model's four escalations carry feedback.
    assert_eq!(weak.calls(), 10);
    assert_eq!(strong.calls(), 14);
    assert_eq!((report["calls_live"].as_u64(), report["calls_from_cache"].as_u64()), (Some(24), Some(34)));
    let plain = |body: &Value| body["messages"][0]["content"] == format!("What is {n} + {n}?", n = question(body));
    let with_feedback = strong.received().iter().filter(|r| !plain(&r.body)).count();
    assert_eq!(with_feedback, 4, "each escalation tells the strong model why the weak answer fell short");

    let markdown = workspace.out("report.md");
    for needle in [
        "| chain | 80.0 % (49.0 %–94.3 %)",
        "| weak alone | 60.0 %",
        "accepted right",
        "**chain**",
        "![accuracy against cost per 1000 requests (USD)](curve.svg)",
    ] {
        assert!(markdown.contains(needle), "{needle} missing from\n{markdown}");
    }
    let svg = workspace.out("curve.svg");
    assert!(svg.starts_with("<svg") && svg.contains("strong alone") && svg.contains("random like chain"), "{svg}");
    assert_eq!(workspace.out("items.jsonl").lines().count(), 10 * 8, "2 alone, 3 chains, 3 random");

    // Again, from the cache: no model is called, and the numbers are the same.
    let output = workspace.eval(&config, &args).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!((weak.calls(), strong.calls()), (10, 14));
    let again = workspace.report();
    assert_eq!((again["calls_live"].as_u64(), again["calls_from_cache"].as_u64()), (Some(0), Some(58)));
    assert_eq!(strategy(&again, "chain")["chain"]["confusion"], stats["confusion"]);
}

#[tokio::test]
async fn eval_refuses_bad_datasets_tasks_and_sweeps_by_name() {
    let workspace = Workspace::new("refuse");
    let weak = UpstreamDouble::start(Behaviour::Reply(Responder::new(weak_answer))).await;
    let strong = UpstreamDouble::start(Behaviour::Reply(Responder::new(strong_answer))).await;
    let config = sums_config(&workspace, &weak, &strong);
    let dataset = sums_dataset(&workspace);
    let bad = workspace
        .write("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"grader\": \"numeric\"}\n{\n");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--dataset", bad.to_str().unwrap(), "--task", "sums"],
            "has 2 problems:\n  - line 1: `expected` must be a number",
        ),
        (
            &["--dataset", dataset.to_str().unwrap(), "--task", "nope"],
            "unknown task \"nope\" (--task); tasks in the config: sums",
        ),
        (
            &["--dataset", dataset.to_str().unwrap(), "--task", "sums", "--sweep", "verify.checks=[\"fuzzy\"]"],
            "--sweep verify.checks=[\"fuzzy\"]: config",
        ),
        (&["--dataset", "/nonexistent.jsonl", "--task", "sums"], "cannot read the dataset /nonexistent.jsonl"),
    ];
    for (args, needle) in cases {
        let output = workspace.eval(&config, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {needle} missing from {stderr}");
    }
    assert_eq!((weak.calls(), strong.calls()), (0, 0), "nothing is asked before the inputs are right");
}

/// The strong double's right answer to each smoke item, by a phrase of its question.
const SMOKE_ANSWERS: [(&str, &str); 10] = [
    ("7 + 5", "7 + 5 = 12\n#### 12"),
    ("3 apples", "4 boxes × 3 = 12 apples.\n#### 12"),
    ("10 minus 4", "6"),
    ("9 times 3", "27"),
    ("one word: yes", "Yes"),
    ("capital of France", "The capital of France is Paris."),
    ("is a fruit", "B"),
    ("between 1900 and 1999", "1969"),
    ("legs does a spider", "8"),
    ("Python expression", "`5 * 2`"),
];

fn smoke_answer(body: &Value) -> Behaviour {
    let text = body["messages"].to_string();
    let (_, answer) = SMOKE_ANSWERS.iter().find(|(phrase, _)| text.contains(phrase)).unwrap();
    Behaviour::Json(completion(answer, "stop"))
}

/// The CI smoke eval: the real SmolLM2 as the local model and a double that knows the
/// answers as the cloud, every grader (the command ones in their sandbox), the report.
#[tokio::test]
async fn eval_smoke_with_the_real_local_model() {
    let workspace = Workspace::new("smoke");
    let llama = LlamaServer::start().await;
    let strong = UpstreamDouble::start(Behaviour::Reply(Responder::new(smoke_answer))).await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n\n[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\napi_key_env = \"TEST_CLOUD_KEY\"\n\n\
         [models.smollm2]\nupstream = \"local\"\nname = \"smollm2\"\n\n[models.strong]\nupstream = \"cloud\"\nname = \"gpt-test\"\n\n\
         [tasks.smoke]\nchain = [\"smollm2\", \"strong\"]\n\n[tasks.smoke.verify]\nchecks = [\"non_empty\", \"finish_stop\", \"no_refusal\"]\n\n\
         [profiles.default]\ncloud_consent = true\n",
        llama.base_url(),
        strong.base_url()
    );
    let config = workspace.write("tierwise.toml", &toml);
    let dataset = fixtures_dir().join("eval/smoke.jsonl");
    let args = ["--dataset", dataset.to_str().unwrap(), "--task", "smoke", "--seed", "7"];
    let output = workspace.eval(&config, &args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("smollm2 alone") && stderr.contains("10/10"), "progress for each strategy: {stderr}");
    let report = workspace.report();

    let strong_alone = strategy(&report, "strong alone");
    assert_eq!(strong_alone["correct"], 10, "every grader accepts a right answer: {:#}", workspace.out("items.jsonl"));
    assert_eq!(strong_alone["grader_errors"], 0);
    let local = strategy(&report, "smollm2 alone");
    assert_eq!((local["items"].as_u64(), local["failed"].as_u64()), (Some(10), Some(0)));
    assert_eq!(local["answered_by_tier"], json!({"local": 1.0}));
    let chain = strategy(&report, "chain");
    let m = &chain["chain"]["confusion"];
    let judged: u64 = ["accepted_right", "accepted_wrong", "rejected_right", "rejected_wrong", "not_verified"]
        .iter()
        .map(|k| m[k].as_u64().unwrap())
        .sum();
    assert_eq!(judged, 10, "every item's first answer is in the matrix: {m}");
    let escalated = chain["chain"]["escalation_rate"].as_f64().unwrap();
    assert_eq!(strong.calls() as f64, 10.0 + (escalated * 10.0).round(), "strong alone, then the escalations");
    assert_eq!(report["calls_from_cache"], 10, "the chain's local step is the request asked alone");
    assert_eq!(workspace.out("items.jsonl").lines().count(), 40);

    let output = workspace.eval(&config, &args).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(workspace.report()["calls_live"], 0, "the second run is answered from the cache");
}
