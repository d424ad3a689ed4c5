//! The order the run loop walks a plan in: chain order, except that with `prefer_warm`,
//! among consecutive chain steps of one tier, loaded models go first.

use crate::policy::{Action, Plan, Step};

/// Plan step indexes in walking order. With `prefer_warm`, each run of consecutive
/// same-tier steps is stably sorted: warm, then unknown, then cold runnable steps, then
/// the skipped ones. Everything else keeps its chain order.
pub fn walk_order(plan: &Plan, prefer_warm: bool, warm: impl Fn(&Step) -> Option<bool>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..plan.steps.len()).collect();
    if !prefer_warm {
        return order;
    }
    let rank = |index: usize| {
        let planned = &plan.steps[index];
        match (&planned.action, warm(&planned.step)) {
            (Action::Run, Some(true)) => 0,
            (Action::Run, None) => 1,
            (Action::Run, Some(false)) => 2,
            (Action::Skip(_), _) => 3,
        }
    };
    let mut start = 0;
    while start < order.len() {
        let tier = plan.steps[start].step.tier;
        let end = (start..plan.steps.len()).find(|&i| plan.steps[i].step.tier != tier).unwrap_or(plan.steps.len());
        order[start..end].sort_by_key(|&i| rank(i));
        start = end;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ContentClass, PlannedStep, Tier, Why};

    fn plan(steps: &[(&str, Tier, bool)]) -> Plan {
        Plan {
            task: "t".into(),
            profile: "p".into(),
            class: ContentClass::Normal,
            steps: steps
                .iter()
                .enumerate()
                .map(|(index, (model, tier, run))| PlannedStep {
                    step: Step {
                        index,
                        model: model.to_string(),
                        upstream_model: model.to_string(),
                        upstream: "u".into(),
                        tier: *tier,
                    },
                    action: if *run { Action::Run } else { Action::Skip(Why::NoConsent { profile: "p".into() }) },
                })
                .collect(),
            rules_reply: None,
        }
    }

    fn warmth(step: &Step) -> Option<bool> {
        match step.model.as_str() {
            "hot" | "hot2" => Some(true),
            "cold" => Some(false),
            _ => None,
        }
    }

    #[test]
    fn warm_first_within_a_tier_and_never_across_tiers() {
        let p = plan(&[
            ("cold", Tier::Local, true),
            ("unknown", Tier::Local, true),
            ("hot", Tier::Local, true),
            ("hot2", Tier::Server, true),
            ("cold", Tier::Cloud, true),
        ]);
        assert_eq!(walk_order(&p, true, warmth), vec![2, 1, 0, 3, 4]);
        assert_eq!(walk_order(&p, false, warmth), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_cloud_step_never_jumps_ahead_of_a_cold_local_one() {
        let p = plan(&[("cold", Tier::Local, true), ("hot", Tier::Cloud, true)]);
        assert_eq!(walk_order(&p, true, warmth), vec![0, 1]);
    }

    #[test]
    fn skipped_steps_go_after_runnable_ones_of_their_tier() {
        let p = plan(&[("hot", Tier::Local, false), ("cold", Tier::Local, true), ("hot2", Tier::Local, true)]);
        assert_eq!(walk_order(&p, true, warmth), vec![2, 1, 0]);
    }
}
