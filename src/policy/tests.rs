//! DESIGN §2's planning rules, one test per rule and per ordering interaction.

use std::collections::BTreeMap;

use super::*;
use crate::config::{load_from_str, Profile};

fn config() -> Config {
    load_from_str(
        r#"
        [upstreams.laptop]
        tier = "local"
        base_url = "http://127.0.0.1:8080/v1"
        [upstreams.lan]
        tier = "server"
        base_url = "http://gpu.lan:8000/v1"
        [upstreams.vendor]
        tier = "cloud"
        base_url = "https://api.example.com/v1"
        [models]
        small = { upstream = "laptop" }
        mid = { upstream = "lan" }
        big = { upstream = "vendor" }
        [tasks.chat]
        chain = ["small", "mid", "big"]
        [tasks.companion]
        chain = ["small", "mid", "big"]
        rules = { reply = "I am offline right now." }
        [tasks.pro]
        chain = ["small", "mid", "big"]
        min_tier = "server"
        [tasks.pro-rules]
        chain = ["small", "mid", "big"]
        min_tier = "cloud"
        rules = { reply = "Upgrade to use this." }
        [tasks.diary]
        chain = ["small", "big"]
        content_class = "sensitive"
        [tasks.cloud-only]
        chain = ["big"]
        "#,
        &|_| None,
    )
    .unwrap()
}

fn profile(tiers: &[Tier], consent: bool, overrides: &[(&str, Tier)]) -> Profile {
    Profile {
        name: "p".into(),
        allowed_tiers: tiers.to_vec(),
        cloud_consent: consent,
        task_overrides: overrides.iter().map(|(t, tier)| (t.to_string(), *tier)).collect::<BTreeMap<_, _>>(),
        fallback_to_rules_on_error: false,
        locale: Locale::En,
        budget: Default::default(),
    }
}

const ALL: [Tier; 3] = [Tier::Local, Tier::Server, Tier::Cloud];

fn normal() -> Classification {
    Classification { class: ContentClass::Normal, because: vec![] }
}

fn sensitive() -> Classification {
    Classification {
        class: ContentClass::Sensitive,
        because: vec!["detected email address in messages[0].content".into()],
    }
}

fn plan_for(task: &str, profile: &Profile, class: &Classification) -> Result<Plan, Refusal> {
    let config = config();
    let resolved = resolve(&config, task).unwrap();
    plan(&config, &PlanRequest { resolved: &resolved, profile, class })
}

/// `(model, "run" | reason)` for each step.
fn actions(plan: &Plan) -> Vec<(String, &'static str)> {
    plan.steps
        .iter()
        .map(|s| {
            let action = match &s.action {
                Action::Run => "run",
                Action::Skip(why) => why.reason().as_str(),
            };
            (s.step.model.clone(), action)
        })
        .collect()
}

fn expect(plan: &Plan, expected: &[(&str, &'static str)]) {
    let expected: Vec<(String, &str)> = expected.iter().map(|(m, a)| (m.to_string(), *a)).collect();
    assert_eq!(actions(plan), expected);
}

// Rule 1: minimum tier against the effective maximum.

#[test]
fn rule1_a_min_tier_above_what_the_profile_allows_is_tier_too_low() {
    let refusal = plan_for("pro", &profile(&[Tier::Local], true, &[]), &normal()).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::TierTooLow { task: "pro".into(), min_tier: Tier::Server, max_tier: Tier::Local, profile: "p".into() }
    );
    assert!(refusal.explain(Locale::En).contains("add server to allowed_tiers of profile \"p\""));
}

#[test]
fn rule1_with_a_rules_reply_the_rules_answer() {
    let plan = plan_for("pro-rules", &profile(&[Tier::Local, Tier::Server], true, &[]), &normal()).unwrap();
    // Cloud meets the minimum but the profile does not allow it.
    expect(&plan, &[("small", "below_min_tier"), ("mid", "below_min_tier"), ("big", "not_allowed")]);
    assert_eq!(plan.rules_reply.as_deref(), Some("Upgrade to use this."));
    assert!(plan.can_answer());
}

#[test]
fn rule1_an_override_counts_as_opting_in_to_its_tier() {
    let p = profile(&[Tier::Local], true, &[("pro", Tier::Cloud)]);
    let plan = plan_for("pro", &p, &normal()).unwrap();
    expect(&plan, &[("small", "overridden"), ("mid", "overridden"), ("big", "run")]);
}

#[test]
fn rule1_min_tier_is_checked_before_the_backstop() {
    // Sensitive content does not turn a tier_too_low into a privacy block.
    let refusal = plan_for("pro", &profile(&[Tier::Local], true, &[]), &sensitive()).unwrap_err();
    assert_eq!(refusal.code(), "tier_too_low");
}

// Rule 2: the sensitive-content backstop.

#[test]
fn rule2_sensitive_content_keeps_only_local_steps() {
    let plan = plan_for("chat", &profile(&ALL, true, &[]), &sensitive()).unwrap();
    expect(&plan, &[("small", "run"), ("mid", "privacy"), ("big", "privacy")]);
    let Action::Skip(why) = &plan.steps[2].action else { panic!() };
    assert!(why.explain(Locale::En).contains("detected email address"), "the reason names the evidence");
}

#[test]
fn rule2_a_sensitive_task_is_sensitive_without_any_finding() {
    let config = config();
    let resolved = resolve(&config, "diary").unwrap();
    let class = classify(config.tasks["diary"].content_class, &[], None).unwrap();
    let plan =
        plan(&config, &PlanRequest { resolved: &resolved, profile: &profile(&ALL, true, &[]), class: &class }).unwrap();
    expect(&plan, &[("small", "run"), ("big", "privacy")]);
}

#[test]
fn rule2_the_backstop_is_the_reason_even_where_the_profile_also_forbids() {
    let plan = plan_for("chat", &profile(&[Tier::Local], false, &[]), &sensitive()).unwrap();
    expect(&plan, &[("small", "run"), ("mid", "privacy"), ("big", "privacy")]);
}

#[test]
fn rule2_beats_an_override_to_cloud() {
    let p = profile(&ALL, true, &[("chat", Tier::Cloud)]);
    let refusal = plan_for("chat", &p, &sensitive()).unwrap_err();
    assert_eq!(refusal.code(), "privacy_blocked");
    assert!(refusal.explain(Locale::De).contains("sensible Inhalte verlassen diesen Rechner nie"));
}

#[test]
fn rule2_beats_an_override_to_server_even_with_a_rules_reply() {
    let p = profile(&ALL, true, &[("companion", Tier::Server)]);
    assert_eq!(plan_for("companion", &p, &sensitive()).unwrap_err().code(), "privacy_blocked");
}

#[test]
fn rule2_allows_an_override_to_local() {
    let p = profile(&ALL, true, &[("chat", Tier::Local)]);
    let plan = plan_for("chat", &p, &sensitive()).unwrap();
    expect(&plan, &[("small", "run"), ("mid", "overridden"), ("big", "overridden")]);
}

#[test]
fn rule2_sensitive_below_min_tier_leaves_nothing_to_run() {
    let plan = plan_for("pro", &profile(&ALL, true, &[]), &sensitive()).unwrap();
    expect(&plan, &[("small", "below_min_tier"), ("mid", "privacy"), ("big", "privacy")]);
    assert!(!plan.can_answer());
}

// Rule 3: an override is used verbatim.

#[test]
fn rule3_an_override_runs_only_its_tier() {
    let p = profile(&ALL, true, &[("chat", Tier::Server)]);
    expect(
        &plan_for("chat", &p, &normal()).unwrap(),
        &[("small", "overridden"), ("mid", "run"), ("big", "overridden")],
    );
}

#[test]
fn rule3_an_override_to_a_tier_the_chain_lacks_is_no_backend() {
    let p = profile(&ALL, true, &[("diary", Tier::Server)]);
    let plan = plan_for("diary", &p, &normal()).unwrap();
    expect(&plan, &[("small", "overridden"), ("big", "overridden"), ("-", "no_backend")]);
    assert_eq!(plan.steps[2].step.tier, Tier::Server);
}

#[test]
fn rule3_consent_still_applies_to_an_override_to_cloud() {
    let p = profile(&ALL, false, &[("chat", Tier::Cloud)]);
    expect(
        &plan_for("chat", &p, &normal()).unwrap(),
        &[("small", "overridden"), ("mid", "overridden"), ("big", "no_consent")],
    );
}

// Rule 4: the chain, filtered, in chain order; rules last.

#[test]
fn rule4_the_chain_keeps_its_order_filtered_by_the_profile() {
    let p = profile(&[Tier::Local, Tier::Cloud], true, &[]);
    expect(&plan_for("chat", &p, &normal()).unwrap(), &[("small", "run"), ("mid", "not_allowed"), ("big", "run")]);
}

#[test]
fn rule4_steps_below_min_tier_are_skipped() {
    let plan = plan_for("pro", &profile(&ALL, true, &[]), &normal()).unwrap();
    expect(&plan, &[("small", "below_min_tier"), ("mid", "run"), ("big", "run")]);
}

#[test]
fn rule4_cloud_without_consent_is_skipped() {
    let plan = plan_for("chat", &profile(&ALL, false, &[]), &normal()).unwrap();
    expect(&plan, &[("small", "run"), ("mid", "run"), ("big", "no_consent")]);
}

#[test]
fn rule4_a_profile_without_tiers_runs_nothing() {
    let plan = plan_for("chat", &profile(&[], true, &[]), &normal()).unwrap();
    expect(&plan, &[("small", "no_tiers_configured"), ("mid", "no_tiers_configured"), ("big", "no_tiers_configured")]);
    assert!(!plan.can_answer());
    let with_rules = plan_for("companion", &profile(&[], true, &[]), &normal()).unwrap();
    assert!(with_rules.can_answer(), "the rules reply still answers");
}

#[test]
fn rule4_the_rules_reply_comes_after_the_chain() {
    let plan = plan_for("companion", &profile(&ALL, true, &[]), &normal()).unwrap();
    expect(&plan, &[("small", "run"), ("mid", "run"), ("big", "run")]);
    assert_eq!(plan.rules_reply.as_deref(), Some("I am offline right now."));
}

#[test]
fn a_direct_model_request_runs_under_the_default_policy() {
    let plan = plan_for("big", &profile(&ALL, false, &[]), &normal()).unwrap();
    expect(&plan, &[("big", "no_consent")]);
    let plan = plan_for("big", &profile(&ALL, true, &[]), &sensitive()).unwrap();
    expect(&plan, &[("big", "privacy")]);
}

#[test]
fn the_implied_default_profile_allows_every_tier_without_cloud_consent() {
    let config = config();
    let default = &config.profiles["default"];
    assert_eq!(default.allowed_tiers, ALL.to_vec());
    assert!(!default.cloud_consent);
    let plan = plan_for("cloud-only", default, &normal()).unwrap();
    expect(&plan, &[("big", "no_consent")]);
}
