//! Which steps may run for a request: a pure function of the config and the request's
//! task. No I/O here, and nothing from `upstream/`.

mod tier;

pub use tier::Tier;

use crate::config::Config;

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

/// The ordered steps the run loop walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub task: String,
    pub steps: Vec<Step>,
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

/// The steps for a resolved task, in chain order.
pub fn plan(config: &Config, resolved: &Resolved) -> Plan {
    let chain: Vec<&String> = if resolved.direct {
        vec![&resolved.task]
    } else {
        config.tasks.get(&resolved.task).map(|t| t.chain.iter().collect()).unwrap_or_default()
    };
    let steps = chain
        .into_iter()
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
        .collect();
    Plan { task: resolved.task.clone(), steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_str;

    fn config() -> Config {
        load_from_str(
            r#"
            [upstreams.local]
            tier = "local"
            base_url = "http://127.0.0.1:8080/v1"
            [upstreams.cloud]
            tier = "cloud"
            base_url = "https://api.example.com/v1"
            [models]
            small = { upstream = "local", name = "smollm2" }
            big = { upstream = "cloud", name = "gpt-x" }
            [tasks.chat]
            chain = ["small", "big"]
            "#,
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn a_task_plans_its_chain_in_order() {
        let config = config();
        let plan = plan(&config, &resolve(&config, "chat").unwrap());
        let names: Vec<_> = plan.steps.iter().map(|s| (s.model.as_str(), s.upstream_model.as_str(), s.tier)).collect();
        assert_eq!(names, vec![("small", "smollm2", Tier::Local), ("big", "gpt-x", Tier::Cloud)]);
    }

    #[test]
    fn a_model_alias_is_a_one_step_plan() {
        let config = config();
        let resolved = resolve(&config, "big").unwrap();
        assert!(resolved.direct);
        let plan = plan(&config, &resolved);
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].upstream, "cloud");
    }

    #[test]
    fn an_unknown_name_lists_what_exists() {
        let err = resolve(&config(), "gpt-5").unwrap_err();
        assert_eq!(err.known, vec!["chat", "big", "small"]);
    }
}
