//! The trail in the response headers: `x-tierwise-task`, `-tier`, `-model`, `-attempts`
//! and `-content-class` (DESIGN §6).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::escalate::Trail;
use crate::policy::{Classification, Tier};

pub const TASK: HeaderName = HeaderName::from_static("x-tierwise-task");
pub const CONTENT_CLASS: HeaderName = HeaderName::from_static("x-tierwise-content-class");
pub const DEADLINE: HeaderName = HeaderName::from_static("x-tierwise-deadline-ms");
const TIER: HeaderName = HeaderName::from_static("x-tierwise-tier");
const MODEL: HeaderName = HeaderName::from_static("x-tierwise-model");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-tierwise-attempts");

/// Sets `name` when `value` is a valid header value (config names are validated plain
/// ASCII, so the trail's always is).
pub fn try_set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

/// The trail headers of a finished request; `answered` is the step that answered.
pub fn set_trail(
    headers: &mut HeaderMap,
    task: &str,
    answered: Option<(Tier, &str)>,
    trail: &Trail,
    class: &Classification,
) {
    try_set(headers, TASK, task);
    try_set(headers, TIER, answered.map_or("none", |a| a.0.as_str()));
    if let Some((_, model)) = answered {
        try_set(headers, MODEL, model);
    }
    try_set(headers, ATTEMPTS, &trail.header_value());
    try_set(headers, CONTENT_CLASS, class.class.as_str());
}
