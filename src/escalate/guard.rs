//! What a model says is content too. A request classed normal may still get personal data
//! back from its local model (which sees local context: retrieval, tool results). Before
//! anything a model said — its answer (judge input), a check's or a judge's feedback, an
//! error text — goes to a higher tier, the guard scans it; personal data in it never goes
//! up. `[detect] local_output` chooses how: reclassify the request sensitive from here on
//! (the default), or redact the finding to a typed placeholder.

use crate::policy::{ContentClass, Detector, LocalOutput, PlannedStep, Tier, Why};

/// The run's content class as it goes, and the policy for what models say.
pub struct Guard<'d> {
    detector: &'d Detector,
    policy: LocalOutput,
    class: ContentClass,
    /// Why the run made the request sensitive, if it did.
    reclassified: Option<String>,
}

/// What screening a text found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// Nothing found (or the request is sensitive already: the text stays local anyway).
    Clean,
    /// The request is sensitive from now on; the text may stay as it is, it goes no
    /// higher than local.
    Reclassified,
    /// The findings replaced by placeholders; `kinds` names them (`email`).
    Redacted { text: String, kinds: Vec<String> },
}

/// What the guard did at one attempt, for the trail, the audit line and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// The request became sensitive: `found` says what was found where.
    Reclassified { found: String },
    /// Personal data in the feedback was replaced by these placeholders.
    FeedbackRedacted { kinds: Vec<String> },
    /// The answer held personal data, so the judge above local was not asked.
    JudgeWithheld { kinds: Vec<String> },
}

impl Guarded {
    /// `reclassified`, `feedback_redacted`, `judge_withheld`: the metric's label.
    pub fn action(&self) -> &'static str {
        match self {
            Guarded::Reclassified { .. } => "reclassified",
            Guarded::FeedbackRedacted { .. } => "feedback_redacted",
            Guarded::JudgeWithheld { .. } => "judge_withheld",
        }
    }
}

impl<'d> Guard<'d> {
    pub fn new(detector: &'d Detector, class: ContentClass, policy: LocalOutput) -> Self {
        Guard { detector, policy, class, reclassified: None }
    }

    pub fn policy(&self) -> LocalOutput {
        self.policy
    }

    pub fn is_sensitive(&self) -> bool {
        self.class == ContentClass::Sensitive
    }

    /// Why the run made the request sensitive, if it did.
    pub fn reclassified(&self) -> Option<&str> {
        self.reclassified.as_deref()
    }

    /// Whether `planned` may still run: planned to, and within the privacy ceiling.
    pub fn may_run(&self, planned: &PlannedStep) -> bool {
        planned.action == crate::policy::Action::Run && !(self.is_sensitive() && planned.step.tier > Tier::Local)
    }

    /// The backstop's reason for a step above local once the request is sensitive.
    pub fn privacy_why(&self) -> Why {
        let because = self.reclassified.clone().unwrap_or_else(|| "sensitive content".into());
        Why::Privacy { because }
    }

    /// Screens `text`, said at `source` (`the answer of local/smollm2`), before it goes to
    /// a higher tier.
    pub fn screen(&mut self, text: &str, source: &str) -> Screened {
        if self.is_sensitive() || !self.detector.is_enabled() {
            return Screened::Clean;
        }
        let Some(first) = self.detector.findings(text).into_iter().next() else { return Screened::Clean };
        match self.policy {
            LocalOutput::Reclassify => {
                self.class = ContentClass::Sensitive;
                self.reclassified = Some(format!("detected {} in {source}", self.detector.label(first.what)));
                Screened::Reclassified
            }
            LocalOutput::Redact => match self.detector.redact(text) {
                Some(redacted) => Screened::Redacted { text: redacted.text, kinds: redacted.kinds },
                None => Screened::Clean,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Builtin;

    fn detector() -> Detector {
        Detector::new(&Builtin::ALL, Vec::new(), vec![phonenumber::country::Id::DE]).unwrap()
    }

    #[test]
    fn reclassifies_once_and_says_why() {
        let d = detector();
        let mut guard = Guard::new(&d, ContentClass::Normal, LocalOutput::Reclassify);
        assert_eq!(guard.screen("all fine", "the answer"), Screened::Clean);
        assert_eq!(guard.screen("write to anna@example.org", "the answer of local/m"), Screened::Reclassified);
        assert!(guard.is_sensitive());
        assert_eq!(guard.reclassified(), Some("detected email address in the answer of local/m"));
        assert_eq!(guard.screen("call +49 30 1234567", "x"), Screened::Clean, "sensitive already: stays local");
    }

    #[test]
    fn redacts_to_placeholders_and_stays_normal() {
        let d = detector();
        let mut guard = Guard::new(&d, ContentClass::Normal, LocalOutput::Redact);
        let screened = guard.screen("mail anna@example.org, IBAN DE89 3704 0044 0532 0130 00", "feedback");
        assert_eq!(
            screened,
            Screened::Redacted { text: "mail [email], IBAN [iban]".into(), kinds: vec!["email".into(), "iban".into()] }
        );
        assert!(!guard.is_sensitive());
    }
}
