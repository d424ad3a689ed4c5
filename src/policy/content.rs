//! Content classes and how a request's class is decided: fail-closed, the highest of the
//! task's class, the request's header and body field, and the detector's finding.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentClass {
    Normal,
    /// Never leaves this machine: `local` and `none` tiers only.
    Sensitive,
}

impl ContentClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentClass::Normal => "normal",
            ContentClass::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ContentClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentClass {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(ContentClass::Normal),
            "sensitive" => Ok(ContentClass::Sensitive),
            _ => Err(()),
        }
    }
}

/// A request's class and every source that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub class: ContentClass,
    /// Why, e.g. `task content_class`, `header x-tierwise-content-class`,
    /// `detected email address in messages[1].content`.
    pub because: Vec<String>,
}

/// Where a class was stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Metadata,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Header => "header x-tierwise-content-class",
            Source::Metadata => "metadata.content_class",
        }
    }
}

/// A class value a request stated that tierwise does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownClass {
    pub value: String,
    pub source: Source,
}

/// The maximum of every input: a request may raise the task's class, never lower it.
pub fn classify(
    task_class: ContentClass,
    stated: &[(Source, Option<&str>)],
    detected: Option<String>,
) -> Result<Classification, UnknownClass> {
    let mut class = task_class;
    let mut because = Vec::new();
    if task_class == ContentClass::Sensitive {
        because.push("task content_class".to_string());
    }
    for (source, value) in stated {
        let Some(value) = value else { continue };
        let parsed = value
            .trim()
            .parse::<ContentClass>()
            .map_err(|()| UnknownClass { value: value.trim().to_string(), source: *source })?;
        if parsed == ContentClass::Sensitive {
            because.push(source.label().to_string());
        }
        class = class.max(parsed);
    }
    if let Some(finding) = detected {
        class = ContentClass::Sensitive;
        because.push(finding);
    }
    Ok(Classification { class, because })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_can_raise_but_never_lower_the_class() {
        let lowered = classify(ContentClass::Sensitive, &[(Source::Header, Some("normal"))], None).unwrap();
        assert_eq!(lowered.class, ContentClass::Sensitive);
        let raised = classify(ContentClass::Normal, &[(Source::Metadata, Some("sensitive"))], None).unwrap();
        assert_eq!(raised.class, ContentClass::Sensitive);
        assert_eq!(raised.because, ["metadata.content_class"]);
    }

    #[test]
    fn a_finding_makes_it_sensitive_and_says_why() {
        let c =
            classify(ContentClass::Normal, &[(Source::Header, Some("normal"))], Some("detected email".into())).unwrap();
        assert_eq!(c.class, ContentClass::Sensitive);
        assert_eq!(c.because, ["detected email"]);
    }

    #[test]
    fn an_unknown_value_is_an_error_not_normal() {
        let err = classify(ContentClass::Normal, &[(Source::Header, Some("secret"))], None).unwrap_err();
        assert_eq!(err, UnknownClass { value: "secret".into(), source: Source::Header });
    }
}
