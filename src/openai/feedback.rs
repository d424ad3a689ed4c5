//! Feedback injection: a rejected step's feedback reaches the next step appended to the
//! last user message, `\n\nPrior attempt feedback: <feedback>` per step, in order
//! (DESIGN §3).

use serde_json::Value;

use super::{Content, Message, Role};

/// `messages` with each of `feedback` appended to the last user message's text (its last
/// text part for array content; a new text part if it has none).
pub fn inject(messages: &[Message], feedback: &[String]) -> Vec<Message> {
    let mut messages = messages.to_vec();
    let suffix = suffix(feedback);
    let last_user = messages.iter_mut().rev().find(|m| m.role == Role::User);
    if let Some(message) = last_user {
        match &mut message.content {
            Some(Content::Text(text)) => text.push_str(&suffix),
            Some(Content::Parts(parts)) => {
                let last_text = parts.iter_mut().rev().find_map(|p| match p.get_mut("text") {
                    Some(Value::String(text)) => Some(text),
                    _ => None,
                });
                match last_text {
                    Some(text) => text.push_str(&suffix),
                    None => parts.push(serde_json::json!({"type": "text", "text": suffix.trim_start()})),
                }
            }
            None => message.content = Some(Content::Text(suffix.trim_start().to_string())),
        }
    }
    messages
}

/// What the feedback appends to the last user text: `\n\nPrior attempt feedback: …` per
/// rejected step.
pub fn suffix(feedback: &[String]) -> String {
    feedback.iter().map(|f| format!("\n\nPrior attempt feedback: {f}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::openai::ChatRequest;

    #[test]
    fn feedback_accumulates_on_the_last_user_message() {
        let req: ChatRequest = serde_json::from_value(json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "Q?"}, {"type": "image_url", "image_url": {"url": "u"}}]}
        ]}))
        .unwrap();
        let body: Value =
            serde_json::from_slice(&req.body_for("m", &["too short".into(), "not JSON".into()]).unwrap()).unwrap();
        assert_eq!(body["messages"][0]["content"], "first");
        assert_eq!(
            body["messages"][2]["content"][0]["text"],
            "Q?\n\nPrior attempt feedback: too short\n\nPrior attempt feedback: not JSON"
        );
        let text: ChatRequest =
            serde_json::from_value(json!({"messages": [{"role": "user", "content": "Q?"}]})).unwrap();
        let body: Value = serde_json::from_slice(&text.body_for("m", &["be brief".into()]).unwrap()).unwrap();
        assert_eq!(body["messages"][0]["content"], "Q?\n\nPrior attempt feedback: be brief");
    }
}
