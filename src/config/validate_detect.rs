//! Validation of `[detect]` and each task's `detect`: the detector's builtins, patterns
//! and phone regions, and what opaque payloads and local output do.

use regex::Regex;

use super::raw::{RawDetect, RawTaskDetect};
use super::validate::Problems;
use crate::policy::{Builtin, DetectPolicy, Detector, LocalOutput, Opaque, DEFAULT_PHONE_REGIONS};

/// The compiled detector and the default policy for tasks.
pub(super) fn detect(raw: &RawDetect, problems: &mut Problems) -> (Detector, DetectPolicy) {
    let policy =
        policy("detect", raw.opaque.as_deref(), raw.local_output.as_deref(), DetectPolicy::default(), problems);
    (detector(raw, problems), policy)
}

/// A task's policy: its own settings over `[detect]`'s.
pub(super) fn task(
    path: &str,
    raw: Option<&RawTaskDetect>,
    defaults: DetectPolicy,
    problems: &mut Problems,
) -> DetectPolicy {
    match raw {
        None => defaults,
        Some(raw) => {
            policy(&format!("{path}.detect"), raw.opaque.as_deref(), raw.local_output.as_deref(), defaults, problems)
        }
    }
}

fn policy(
    path: &str,
    opaque: Option<&str>,
    local_output: Option<&str>,
    defaults: DetectPolicy,
    problems: &mut Problems,
) -> DetectPolicy {
    let opaque = opaque.map_or(defaults.opaque, |text| {
        Opaque::parse(text).unwrap_or_else(|| {
            problems.hint(format!("{path}.opaque"), format!("unknown value \"{text}\""), "sensitive or normal");
            Opaque::Sensitive
        })
    });
    let local_output = local_output.map_or(defaults.local_output, |text| {
        LocalOutput::parse(text).unwrap_or_else(|| {
            problems.hint(format!("{path}.local_output"), format!("unknown value \"{text}\""), "reclassify or redact");
            LocalOutput::Reclassify
        })
    });
    DetectPolicy { opaque, local_output }
}

fn detector(raw: &RawDetect, problems: &mut Problems) -> Detector {
    let enforce = match raw.mode.as_deref().unwrap_or("enforce") {
        "enforce" => true,
        "off" => false,
        other => {
            problems.hint("detect.mode", format!("unknown mode \"{other}\""), "enforce or off");
            true
        }
    };
    let builtins: Vec<Builtin> = match &raw.builtin {
        None => Builtin::ALL.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let found = Builtin::parse(name);
                if found.is_none() {
                    problems.hint(
                        format!("detect.builtin[{i}]"),
                        format!("unknown detector \"{name}\""),
                        "email, phone, iban, card",
                    );
                }
                found
            })
            .collect(),
    };
    let mut patterns = Vec::new();
    for (i, pattern) in raw.patterns.iter().enumerate() {
        match Regex::new(&pattern.regex) {
            Ok(regex) => patterns.push((pattern.name.clone(), regex)),
            Err(err) => problems.add(format!("detect.patterns[{i}].regex"), format!("not a valid regex: {err}")),
        }
    }
    let default_regions: Vec<String>;
    let region_names = match &raw.phone_regions {
        Some(names) => names,
        None => {
            default_regions = DEFAULT_PHONE_REGIONS.iter().map(|r| r.to_string()).collect();
            &default_regions
        }
    };
    let mut regions = Vec::new();
    for (i, name) in region_names.iter().enumerate() {
        match name.to_ascii_uppercase().parse::<phonenumber::country::Id>() {
            Ok(region) => regions.push(region),
            Err(_) => problems.hint(
                format!("detect.phone_regions[{i}]"),
                format!("unknown region \"{name}\""),
                "an ISO 3166 two-letter country code, such as DE or US",
            ),
        }
    }
    if !enforce {
        return Detector::disabled();
    }
    Detector::new(&builtins, patterns, regions).unwrap_or_else(|err| {
        problems.add("detect", format!("built-in detector failed to compile: {err}"));
        Detector::disabled()
    })
}
