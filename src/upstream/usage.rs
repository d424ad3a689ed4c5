//! What an answer says it used: `usage.prompt_tokens` and `usage.completion_tokens` of a
//! `chat.completion`, its JSON body, or the SSE events of a stream — one reading for the
//! trail, the metrics and the rate limits.

use serde::Deserialize;
use serde_json::Value;

use super::sse;

/// Prompt and completion tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Usage {
    #[serde(rename = "prompt_tokens")]
    pub prompt: u64,
    #[serde(rename = "completion_tokens")]
    pub completion: u64,
}

impl Usage {
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

#[derive(Deserialize)]
struct UsageOnly {
    usage: Option<Usage>,
}

/// The usage of a completion (or chunk) body, if it reports one.
pub fn of_body(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<UsageOnly>(body).ok()?.usage
}

/// The usage of a parsed completion.
pub fn of_completion(completion: &Value) -> Option<Usage> {
    Usage::deserialize(completion.get("usage")?).ok()
}

/// The usage one of `events` (whole SSE events) reports, if any.
pub fn in_events(events: &[u8]) -> Option<Usage> {
    // Most events carry none: only those that name it are parsed.
    if !events.windows(7).any(|w| w == b"\"usage\"") {
        return None;
    }
    sse::events(events).find_map(|event| of_body(event.data.as_deref()?))
}

/// Usage in the Responses API's shape.
#[derive(Deserialize)]
struct ResponsesUsage {
    input_tokens: u64,
    output_tokens: u64,
}

impl From<ResponsesUsage> for Usage {
    fn from(usage: ResponsesUsage) -> Self {
        Usage { prompt: usage.input_tokens, completion: usage.output_tokens }
    }
}

#[derive(Deserialize)]
struct ResponseUsageOnly {
    usage: Option<ResponsesUsage>,
}

/// The usage of a Responses `response` object, if it reports one.
pub fn of_response(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<ResponseUsageOnly>(body).ok()?.usage.map(Usage::from)
}

/// The usage a Responses stream reports in `events`: the `response` of its final event.
pub fn in_response_events(events: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Final {
        response: Option<ResponseUsageOnly>,
    }
    if !events.windows(7).any(|w| w == b"\"usage\"") {
        return None;
    }
    sse::events(events).find_map(|event| {
        let last = serde_json::from_slice::<Final>(event.data.as_deref()?).ok()?;
        last.response?.usage.map(Usage::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_responses_usage_of_an_object_and_of_its_final_event() {
        let usage = Some(Usage { prompt: 32, completion: 8 });
        assert_eq!(
            of_response(br#"{"output":[],"usage":{"input_tokens":32,"output_tokens":8,"total_tokens":40}}"#),
            usage
        );
        let events = b"event: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":32,\"output_tokens\":8}}}\n\n";
        assert_eq!(in_response_events(events), usage);
        assert_eq!(
            in_response_events(b"data: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n"),
            None
        );
    }

    #[test]
    fn reads_usage_however_the_json_is_spaced() {
        let usage = Usage { prompt: 9, completion: 12 };
        assert_eq!(of_body(br#"{"usage":{"prompt_tokens":9,"completion_tokens":12}}"#), Some(usage));
        let spaced = b"data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 9, \"completion_tokens\": 12}}\n\n";
        assert_eq!(in_events(spaced), Some(usage), "a space after the colon is still usage");
        assert_eq!(in_events(b"data: {\"choices\": [], \"usage\": null}\n\n"), None);
        assert_eq!(in_events(b"data: {\"choices\": []}\n\ndata: [DONE]\n\n"), None);
    }
}
