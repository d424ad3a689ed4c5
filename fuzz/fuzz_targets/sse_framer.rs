//! `SseFramer` over a stream cut at fuzzer-chosen points: it releases exactly the input's
//! bytes, in order, only in whole events, and holds back no complete event.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tierwise::upstream::sse::SseFramer;

fuzz_target!(|data: &[u8]| {
    let (sizes, input) = common::split(data);
    let mut framer = SseFramer::default();
    let mut released: Vec<u8> = Vec::new();
    let mut pushed = 0;
    for chunk in common::chunks(input, sizes) {
        pushed += chunk.len();
        let events = framer.push(chunk).expect("an input under MAX_EVENT_BYTES is never too large");
        if let Some(events) = events {
            assert!(ends_an_event(&events), "released a slice that ends mid-event: {events:?}");
            let at = released.len();
            assert!(at + events.len() <= pushed, "released more than was pushed");
            assert_eq!(events[..], input[at..at + events.len()], "released bytes are not the input's, in order");
            released.extend_from_slice(&events);
        }
        // What is held had no boundary before this push, so a new one would end in the
        // chunk (or the three bytes before it): checking there keeps the target linear.
        let held = &input[released.len()..pushed];
        let fresh = &held[held.len().saturating_sub(chunk.len() + 3)..];
        assert!(!holds_a_boundary(fresh), "a complete event was held back: {held:?}");
    }
    match framer.take_rest() {
        Some(rest) => {
            released.extend_from_slice(&rest);
            assert_eq!(released, input, "events and rest together are not the input");
        }
        None => assert!(input[released.len()..].iter().all(u8::is_ascii_whitespace), "take_rest lost bytes"),
    }
    assert_eq!(framer.take_rest(), None, "take_rest left bytes behind");
});

fn ends_an_event(events: &[u8]) -> bool {
    events.ends_with(b"\n\n") || events.ends_with(b"\r\n\r\n")
}

fn holds_a_boundary(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(4).any(|w| w == b"\r\n\r\n")
}
