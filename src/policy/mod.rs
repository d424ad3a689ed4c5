//! Which steps may run for a request: a pure function of the config and the request's
//! task. No I/O here, and nothing from `upstream/`.

mod content;
mod detect;
mod reason;
mod scan;
mod tier;

pub use content::{classify, Classification, ContentClass, Source, UnknownClass};
pub use detect::{Builtin, Detector, Finding, Normalized, Redacted, What, DEFAULT_PHONE_REGIONS};
pub use reason::{nothing_answered, Locale, SkipReason, Why};
pub use scan::{DetectPolicy, LocalOutput, Opaque, Path, Scanner, Segment, NOT_TEXT};
pub use tier::Tier;

use crate::config::{Config, Profile, TaskConfig};

/// What a request's `model` (or `x-tierwise-task` header) named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The task name, or the model alias for a direct request.
    pub task: String,
    /// True when the name was a model alias: a one-step chain.
    pub direct: bool,
}

/// The name matched neither a task nor a model alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub name: String,
    /// Every name a client may use, tasks first.
    pub known: Vec<String>,
}

/// Resolves a client-supplied name: a task, else a model alias.
pub fn resolve(config: &Config, name: &str) -> Result<Resolved, UnknownName> {
    if config.tasks.contains_key(name) {
        return Ok(Resolved { task: name.to_string(), direct: false });
    }
    if config.models.contains_key(name) {
        return Ok(Resolved { task: name.to_string(), direct: true });
    }
    Err(UnknownName { name: name.to_string(), known: known_names(config) })
}

/// Every name a client may put in `model`: tasks, then direct models.
pub fn known_names(config: &Config) -> Vec<String> {
    config.tasks.keys().chain(config.models.keys()).cloned().collect()
}

/// One step of a plan: a model alias on its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Position in the task's chain.
    pub index: usize,
    pub model: String,
    /// The name sent upstream.
    pub upstream_model: String,
    pub upstream: String,
    pub tier: Tier,
}

/// The name the rules reply goes by in the trail, headers and metrics (tier `none`).
pub const RULES: &str = "rules";

/// The name of the step that stands for a tier no model of the chain has (an override to
/// a tier the task lacks).
pub const NO_MODEL: &str = "-";

impl Step {
    /// The rules reply, tier `none`, after the chain.
    pub fn rules(index: usize) -> Step {
        Step { index, model: RULES.into(), upstream_model: RULES.into(), upstream: RULES.into(), tier: Tier::None }
    }

    /// The place of a tier the chain has no model of.
    pub fn no_model(index: usize, tier: Tier) -> Step {
        Step { index, model: NO_MODEL.into(), upstream_model: String::new(), upstream: NO_MODEL.into(), tier }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    Skip(Why),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub step: Step,
    pub action: Action,
}

/// The ordered steps the run loop walks, each to run or skip with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub task: String,
    pub profile: String,
    pub class: ContentClass,
    pub steps: Vec<PlannedStep>,
    /// The tier-`none` answer after the chain, if the task has one.
    pub rules_reply: Option<String>,
}

impl Plan {
    /// Whether some step (or the rules reply) could answer.
    pub fn can_answer(&self) -> bool {
        self.rules_reply.is_some() || self.steps.iter().any(|s| s.action == Action::Run)
    }
}

/// The request may not run at all, whatever the upstreams do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The task's `min_tier` is above everything the profile allows (rule 1).
    TierTooLow { task: String, min_tier: Tier, max_tier: Tier, profile: String },
    /// The profile overrides the task to a tier sensitive content may not reach.
    PrivacyBlocked { task: String, profile: String, tier: Tier, because: String },
}

/// What a plan is made from.
pub struct PlanRequest<'a> {
    pub resolved: &'a Resolved,
    pub profile: &'a Profile,
    pub class: &'a Classification,
}

/// The task policy of a direct model request: no minimum, normal content, no rules.
fn direct_policy(config: &Config, alias: &str) -> TaskConfig {
    TaskConfig {
        name: alias.to_string(),
        chain: vec![alias.to_string()],
        min_tier: Tier::None,
        content_class: ContentClass::Normal,
        rules_reply: None,
        verify: crate::config::VerifyConfig::default(),
        prefer_warm: false,
        deadline: None,
        detect: config.detect,
        cache: None,
    }
}

/// DESIGN §2 rules 1–4, in order: minimum tier against what the profile allows, the
/// sensitive-content backstop, the task override, then the chain filtered to what may
/// run. Pure: no I/O; availability of upstreams is the run loop's concern.
pub fn plan(config: &Config, request: &PlanRequest<'_>) -> Result<Plan, Refusal> {
    let PlanRequest { resolved, profile, class } = request;
    let direct;
    let task = match config.tasks.get(&resolved.task).filter(|_| !resolved.direct) {
        Some(task) => task,
        None => {
            direct = direct_policy(config, &resolved.task);
            &direct
        }
    };
    let chain = chain_steps(config, task);
    let overridden = profile.task_overrides.get(&task.name).copied();
    let sensitive = class.class == ContentClass::Sensitive;
    let because = class.because.join(", ");
    let mut plan = Plan {
        task: task.name.clone(),
        profile: profile.name.clone(),
        class: class.class,
        steps: Vec::new(),
        rules_reply: task.rules_reply.clone(),
    };

    // Rule 1: an override counts as opting in to its tier.
    let max_tier = profile.max_tier().max(overridden.unwrap_or(Tier::None));
    if task.min_tier > max_tier {
        if plan.rules_reply.is_none() {
            return Err(Refusal::TierTooLow {
                task: task.name.clone(),
                min_tier: task.min_tier,
                max_tier,
                profile: profile.name.clone(),
            });
        }
        plan.steps = chain
            .into_iter()
            .map(|step| {
                let why = if step.tier < task.min_tier {
                    Why::BelowMinTier { min: task.min_tier, task: task.name.clone() }
                } else {
                    Why::NotAllowed { profile: profile.name.clone(), task: task.name.clone() }
                };
                PlannedStep { step, action: Action::Skip(why) }
            })
            .collect();
        return Ok(plan);
    }

    // Rules 2 and 3: an override is used verbatim, but never past the backstop.
    if let Some(tier) = overridden {
        if sensitive && tier > Tier::Local {
            return Err(Refusal::PrivacyBlocked {
                task: task.name.clone(),
                profile: profile.name.clone(),
                tier,
                because,
            });
        }
        let mut any = false;
        for step in chain {
            let action = if step.tier != tier {
                Action::Skip(Why::Overridden { profile: profile.name.clone(), tier })
            } else {
                any = true;
                consent_gate(&step, profile)
            };
            plan.steps.push(PlannedStep { step, action });
        }
        if !any {
            let missing = Step::no_model(plan.steps.len(), tier);
            let why = Why::NoBackend { task: task.name.clone(), profile: profile.name.clone() };
            plan.steps.push(PlannedStep { step: missing, action: Action::Skip(why) });
        }
        return Ok(plan);
    }

    // Rules 2 and 4: the chain, filtered; the backstop is checked first so it is the
    // reason shown.
    for step in chain {
        let action = if sensitive && step.tier > Tier::Local {
            Action::Skip(Why::Privacy { because: because.clone() })
        } else if step.tier < task.min_tier {
            Action::Skip(Why::BelowMinTier { min: task.min_tier, task: task.name.clone() })
        } else if profile.allowed_tiers.is_empty() {
            Action::Skip(Why::NoTiersConfigured { profile: profile.name.clone() })
        } else if !profile.allowed_tiers.contains(&step.tier) {
            Action::Skip(Why::NotAllowed { profile: profile.name.clone(), task: task.name.clone() })
        } else {
            consent_gate(&step, profile)
        };
        plan.steps.push(PlannedStep { step, action });
    }
    Ok(plan)
}

fn consent_gate(step: &Step, profile: &Profile) -> Action {
    if step.tier == Tier::Cloud && !profile.cloud_consent {
        Action::Skip(Why::NoConsent { profile: profile.name.clone() })
    } else {
        Action::Run
    }
}

fn chain_steps(config: &Config, task: &TaskConfig) -> Vec<Step> {
    task.chain
        .iter()
        .enumerate()
        .filter_map(|(index, alias)| {
            let model = config.models.get(alias)?;
            let upstream = config.upstream_of(model)?;
            Some(Step {
                index,
                model: alias.clone(),
                upstream_model: model.name.clone(),
                upstream: upstream.name.clone(),
                tier: upstream.tier,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
