//! Why a step did not answer, with what a person can change — in English and German.

use serde::Serialize;

use super::Tier;

/// The machine-readable reason, as in the trail, metrics and `error.skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Cloud step, but the profile has not consented to cloud.
    NoConsent,
    /// No model of the tier the profile or override asks for.
    NoBackend,
    /// The upstream cannot be used: e.g. its API key variable is unset.
    NotAvailable,
    /// The upstream could not be reached.
    NotReady,
    /// The call failed: 5xx, timeout, malformed answer.
    RuntimeError,
    /// Removed by the sensitive-content backstop.
    Privacy,
    /// Below the task's `min_tier`.
    BelowMinTier,
    /// The tier is not in the profile's `allowed_tiers`.
    NotAllowed,
    /// The profile allows no tier at all.
    NoTiersConfigured,
    /// The profile's `task_overrides` pins the task to another tier.
    Overridden,
    /// A paid step would overrun a key's or profile's spend budget.
    Budget,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoConsent => "no_consent",
            SkipReason::NoBackend => "no_backend",
            SkipReason::NotAvailable => "not_available",
            SkipReason::NotReady => "not_ready",
            SkipReason::RuntimeError => "runtime_error",
            SkipReason::Privacy => "privacy",
            SkipReason::BelowMinTier => "below_min_tier",
            SkipReason::NotAllowed => "not_allowed",
            SkipReason::NoTiersConfigured => "no_tiers_configured",
            SkipReason::Overridden => "overridden",
            SkipReason::Budget => "budget",
        }
    }
}

/// The language of messages meant for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    De,
}

impl Locale {
    pub fn parse(tag: &str) -> Option<Locale> {
        let primary = tag.trim().split(['-', '_', ';']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Locale::En),
            "de" => Some(Locale::De),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header tierwise speaks, by preference.
    pub fn from_accept_language(header: &str) -> Option<Locale> {
        let mut tags: Vec<(f32, Locale)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let locale = Locale::parse(pieces.next()?)?;
                let q =
                    pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
                (q > 0.0).then_some((q, locale))
            })
            .collect();
        // Stable: among equal weights the header's order wins.
        tags.sort_by(|a, b| b.0.total_cmp(&a.0));
        tags.first().map(|(_, l)| *l)
    }
}

/// Why a step did not answer, with what is needed to say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    NoConsent {
        profile: String,
    },
    NotAllowed {
        profile: String,
        task: String,
    },
    NoTiersConfigured {
        profile: String,
    },
    BelowMinTier {
        min: Tier,
        task: String,
    },
    Privacy {
        because: String,
    },
    NoBackend {
        task: String,
        profile: String,
    },
    Overridden {
        profile: String,
        tier: Tier,
    },
    MissingKey {
        env: String,
        upstream: String,
    },
    Unreachable {
        upstream: String,
        base_url: String,
        error: String,
    },
    /// The upstream's circuit is open after repeated failures.
    CircuitOpen {
        upstream: String,
        remaining: std::time::Duration,
        failures: u32,
    },
    /// The upstream's `max_concurrent` calls are running and no place freed up.
    Busy {
        upstream: String,
        max: usize,
        /// How long the step waited for a place (zero: the queue was full).
        waited: std::time::Duration,
    },
    /// Known cold, and its learned load time does not fit the request's deadline.
    TooCold {
        expected_load: std::time::Duration,
        remaining: std::time::Duration,
    },
    /// A paid step whose estimated cost would overrun a spend budget.
    OverBudget {
        /// `key` or `profile`.
        scope: &'static str,
        name: String,
        /// `daily` or `monthly`.
        period: &'static str,
        budget_micro_usd: i64,
        /// When the period ends (unix seconds).
        resets_at: u64,
    },
    /// The shared state that keeps the budgets cannot be reached, and
    /// `state.on_error = "deny"`.
    BudgetUnknown,
    Failed {
        upstream: String,
        /// What failed, without the upstream's own words.
        error: String,
        /// The upstream's own message, if it sent one: content (it may echo the prompt).
        said: Option<String>,
    },
}

impl Why {
    /// When a step skipped for this reason may run again, if it is only for now.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Why::Busy { .. } => Some(std::time::Duration::from_secs(1)),
            Why::CircuitOpen { remaining, .. } => Some(*remaining),
            Why::OverBudget { resets_at, .. } => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                Some(std::time::Duration::from_secs(resets_at.saturating_sub(now.as_secs()).max(1)))
            }
            Why::BudgetUnknown => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    pub fn reason(&self) -> SkipReason {
        match self {
            Why::NoConsent { .. } => SkipReason::NoConsent,
            Why::NotAllowed { .. } => SkipReason::NotAllowed,
            Why::NoTiersConfigured { .. } => SkipReason::NoTiersConfigured,
            Why::BelowMinTier { .. } => SkipReason::BelowMinTier,
            Why::Privacy { .. } => SkipReason::Privacy,
            Why::NoBackend { .. } => SkipReason::NoBackend,
            Why::Overridden { .. } => SkipReason::Overridden,
            Why::MissingKey { .. } | Why::CircuitOpen { .. } | Why::Busy { .. } => SkipReason::NotAvailable,
            Why::Unreachable { .. } | Why::TooCold { .. } => SkipReason::NotReady,
            Why::Failed { .. } => SkipReason::RuntimeError,
            Why::OverBudget { .. } | Why::BudgetUnknown => SkipReason::Budget,
        }
    }

    /// What happened — and what to change.
    pub fn explain(&self, locale: Locale) -> String {
        match (locale, self) {
            (Locale::En, Why::NoConsent { profile }) => {
                format!("cloud consent missing — set cloud_consent = true in profile \"{profile}\"")
            }
            (Locale::De, Why::NoConsent { profile }) => {
                format!("Cloud-Einwilligung fehlt — setze cloud_consent = true im Profil \"{profile}\"")
            }
            (Locale::En, Why::NotAllowed { profile, task }) => format!(
                "this tier is not in allowed_tiers of profile \"{profile}\" — add it there, or set task_overrides.\"{task}\""
            ),
            (Locale::De, Why::NotAllowed { profile, task }) => format!(
                "diese Stufe fehlt in allowed_tiers des Profils \"{profile}\" — dort ergänzen oder task_overrides.\"{task}\" setzen"
            ),
            (Locale::En, Why::NoTiersConfigured { profile }) => {
                format!("profile \"{profile}\" allows no tier — set its allowed_tiers")
            }
            (Locale::De, Why::NoTiersConfigured { profile }) => {
                format!("Profil \"{profile}\" erlaubt keine Stufe — setze dort allowed_tiers")
            }
            (Locale::En, Why::BelowMinTier { min, task }) => {
                format!("below the task's minimum tier {min} — lower tasks.\"{task}\".min_tier or use a stronger model")
            }
            (Locale::De, Why::BelowMinTier { min, task }) => format!(
                "unter der Mindeststufe {min} des Tasks — senke tasks.\"{task}\".min_tier oder nutze ein stärkeres Modell"
            ),
            (Locale::En, Why::Privacy { because }) => format!(
                "removed because the content is sensitive ({because}) — sensitive content only runs on local models"
            ),
            (Locale::De, Why::Privacy { because }) => format!(
                "entfernt, weil der Inhalt sensibel ist ({because}) — sensible Inhalte laufen nur auf lokalen Modellen"
            ),
            (Locale::En, Why::NoBackend { task, profile }) => format!(
                "no model of this tier in the chain of task \"{task}\" — add one to tasks.\"{task}\".chain, or change task_overrides in profile \"{profile}\""
            ),
            (Locale::De, Why::NoBackend { task, profile }) => format!(
                "kein Modell dieser Stufe in der Kette von Task \"{task}\" — ergänze tasks.\"{task}\".chain oder ändere task_overrides im Profil \"{profile}\""
            ),
            (Locale::En, Why::Overridden { profile, tier }) => {
                format!("profile \"{profile}\" pins this task to tier {tier} (task_overrides)")
            }
            (Locale::De, Why::Overridden { profile, tier }) => {
                format!("Profil \"{profile}\" legt diesen Task auf Stufe {tier} fest (task_overrides)")
            }
            (Locale::En, Why::MissingKey { env, upstream }) => {
                format!("API key missing — set the environment variable {env} for upstream \"{upstream}\"")
            }
            (Locale::De, Why::MissingKey { env, upstream }) => {
                format!("API-Schlüssel fehlt — setze die Umgebungsvariable {env} für Upstream \"{upstream}\"")
            }
            (Locale::En, Why::Unreachable { upstream, base_url, error }) => {
                format!("not reachable ({error}) — is upstream \"{upstream}\" at {base_url} running?")
            }
            (Locale::De, Why::Unreachable { upstream, base_url, error }) => {
                format!("nicht erreichbar ({error}) — läuft Upstream \"{upstream}\" unter {base_url}?")
            }
            (Locale::En, Why::CircuitOpen { upstream, remaining, failures }) => format!(
                "circuit open for {} s after {failures} failures — upstream \"{upstream}\" keeps failing; one request probes it when that time is up",
                remaining.as_secs().max(1)
            ),
            (Locale::De, Why::CircuitOpen { upstream, remaining, failures }) => format!(
                "Schutzschalter offen für {} s nach {failures} Fehlern — Upstream \"{upstream}\" fällt wiederholt aus; danach prüft ihn eine Anfrage",
                remaining.as_secs().max(1)
            ),
            (Locale::En, Why::Busy { upstream, max, waited }) if waited.is_zero() => format!(
                "busy: {max} calls at once and its queue is full — raise upstreams.{upstream}.max_concurrent or queue_limit, or retry shortly"
            ),
            (Locale::En, Why::Busy { upstream, max, waited }) => format!(
                "busy: {max} calls at once, no place freed up within {} ms — raise upstreams.{upstream}.max_concurrent or queue_wait_ms, or retry shortly",
                waited.as_millis()
            ),
            (Locale::De, Why::Busy { upstream, max, waited }) if waited.is_zero() => format!(
                "ausgelastet: {max} Aufrufe gleichzeitig und die Warteschlange ist voll — upstreams.{upstream}.max_concurrent oder queue_limit erhöhen, oder gleich erneut versuchen"
            ),
            (Locale::De, Why::Busy { upstream, max, waited }) => format!(
                "ausgelastet: {max} Aufrufe gleichzeitig, binnen {} ms wurde kein Platz frei — upstreams.{upstream}.max_concurrent oder queue_wait_ms erhöhen, oder gleich erneut versuchen",
                waited.as_millis()
            ),
            (Locale::En, Why::TooCold { expected_load, remaining }) => format!(
                "cold, expected load {:.1} s exceeds the remaining {:.1} s — allow more time (x-tierwise-deadline-ms or the task's deadline_ms) or keep the model loaded",
                expected_load.as_secs_f64(),
                remaining.as_secs_f64()
            ),
            (Locale::De, Why::TooCold { expected_load, remaining }) => format!(
                "kalt, erwartete Ladezeit {} s übersteigt die verbleibenden {} s — mehr Zeit erlauben (x-tierwise-deadline-ms oder deadline_ms des Tasks) oder das Modell geladen halten",
                format!("{:.1}", expected_load.as_secs_f64()).replace('.', ","),
                format!("{:.1}", remaining.as_secs_f64()).replace('.', ",")
            ),
            (Locale::En, Why::OverBudget { scope, name, period, budget_micro_usd, resets_at }) => format!(
                "over the {period} budget of ${} of {scope} \"{name}\" (budget_usd_{period}) — it resets at {}; local and free steps still answer",
                usd(*budget_micro_usd, '.'),
                crate::state::rfc3339_day(*resets_at)
            ),
            (Locale::De, Why::OverBudget { scope, name, period, budget_micro_usd, resets_at }) => format!(
                "{} von {} $ für {} \"{name}\" ausgeschöpft (budget_usd_{period}) — es wird am {} zurückgesetzt; lokale und kostenlose Stufen antworten weiter",
                if *period == "daily" { "Tagesbudget" } else { "Monatsbudget" },
                usd(*budget_micro_usd, ','),
                if *scope == "key" { "Schlüssel" } else { "Profil" },
                crate::state::rfc3339_day(*resets_at)
            ),
            (Locale::En, Why::BudgetUnknown) => "spend budgets cannot be checked: the shared state (Redis) is unreachable and state.on_error = \"deny\" skips paid steps until it is back".to_string(),
            (Locale::De, Why::BudgetUnknown) => "Budgets nicht prüfbar: der gemeinsame Zustand (Redis) ist nicht erreichbar und state.on_error = \"deny\" überspringt kostenpflichtige Stufen, bis er zurück ist".to_string(),
            (Locale::En, Why::Failed { upstream, error, said }) => {
                format!("failed: {error}{} — check upstream \"{upstream}\"", said_suffix(said))
            }
            (Locale::De, Why::Failed { upstream, error, said }) => {
                format!("fehlgeschlagen: {error}{} — prüfe Upstream \"{upstream}\"", said_suffix(said))
            }
        }
    }
}

/// `5.00` (or `5,00`) from micro-USD; below a cent, to a hundredth of a cent (`0.0010`).
fn usd(micro_usd: i64, decimal: char) -> String {
    let usd = micro_usd as f64 / 1e6;
    let text = if micro_usd < 10_000 { format!("{usd:.4}") } else { format!("{usd:.2}") };
    text.replace('.', &decimal.to_string())
}

fn said_suffix(said: &Option<String>) -> String {
    said.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

impl Why {
    /// The same reason without the upstream's own words (for an audit log that keeps no
    /// content).
    pub fn without_content(&self) -> Why {
        match self {
            Why::Failed { upstream, error, .. } => {
                Why::Failed { upstream: upstream.clone(), error: error.clone(), said: None }
            }
            other => other.clone(),
        }
    }
}

impl super::Refusal {
    /// The error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            super::Refusal::TierTooLow { .. } => "tier_too_low",
            super::Refusal::PrivacyBlocked { .. } => "privacy_blocked",
        }
    }

    /// What was refused — and what to change.
    pub fn explain(&self, locale: Locale) -> String {
        use super::Refusal::*;
        match (locale, self) {
            (Locale::En, TierTooLow { task, min_tier, max_tier, profile }) => format!(
                "task \"{task}\" needs at least tier {min_tier}, but profile \"{profile}\" allows up to {max_tier} — add {min_tier} to allowed_tiers of profile \"{profile}\", or lower tasks.\"{task}\".min_tier"
            ),
            (Locale::De, TierTooLow { task, min_tier, max_tier, profile }) => format!(
                "Task \"{task}\" braucht mindestens Stufe {min_tier}, Profil \"{profile}\" erlaubt höchstens {max_tier} — ergänze {min_tier} in allowed_tiers des Profils \"{profile}\" oder senke tasks.\"{task}\".min_tier"
            ),
            (Locale::En, PrivacyBlocked { task, profile, tier, because }) => format!(
                "task \"{task}\": profile \"{profile}\" pins it to tier {tier}, but the content is sensitive ({because}) and sensitive content never leaves this machine — remove task_overrides.\"{task}\" from profile \"{profile}\", or send content that is not sensitive"
            ),
            (Locale::De, PrivacyBlocked { task, profile, tier, because }) => format!(
                "Task \"{task}\": Profil \"{profile}\" legt ihn auf Stufe {tier} fest, aber der Inhalt ist sensibel ({because}) und sensible Inhalte verlassen diesen Rechner nie — entferne task_overrides.\"{task}\" aus Profil \"{profile}\" oder sende keine sensiblen Inhalte"
            ),
        }
    }
}

/// The first line of the message when no step answered.
pub fn nothing_answered(task: &str, locale: Locale) -> String {
    match locale {
        Locale::En => format!("no tier could answer task \"{task}\":"),
        Locale::De => format!("keine Stufe konnte Task \"{task}\" beantworten:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        assert_eq!(Locale::from_accept_language("de-DE,de;q=0.9,en;q=0.8"), Some(Locale::De));
        assert_eq!(Locale::from_accept_language("fr-FR, en;q=0.5, de;q=0.7"), Some(Locale::De));
        assert_eq!(Locale::from_accept_language("en-GB"), Some(Locale::En));
        assert_eq!(Locale::from_accept_language("fr, es"), None);
        assert_eq!(Locale::from_accept_language("de;q=0"), None);
    }

    #[test]
    fn messages_say_what_to_change_in_both_languages() {
        let why = Why::NoConsent { profile: "default".into() };
        assert_eq!(why.explain(Locale::En), "cloud consent missing — set cloud_consent = true in profile \"default\"");
        assert_eq!(
            why.explain(Locale::De),
            "Cloud-Einwilligung fehlt — setze cloud_consent = true im Profil \"default\""
        );
        let key = Why::MissingKey { env: "OPENAI_API_KEY".into(), upstream: "openai".into() };
        assert!(key.explain(Locale::De).contains("OPENAI_API_KEY"));
        assert_eq!(key.reason(), SkipReason::NotAvailable);
    }
}
