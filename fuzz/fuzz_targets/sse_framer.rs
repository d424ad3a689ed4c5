//! `SseFramer` over a stream cut at fuzzer-chosen points, against a plain reading of the
//! whole input by the WHATWG event-stream rules: after every push it has released exactly
//! the input's bytes up to the last event boundary pushed so far, and `take_rest` gives
//! back all the rest. So every cut yields the same events as the whole input.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tierwise::upstream::sse::SseFramer;

fuzz_target!(|data: &[u8]| {
    let (sizes, input) = common::split(data);
    let mut to_come = boundaries(input).into_iter().peekable();
    let mut framer = SseFramer::default();
    let mut released: Vec<u8> = Vec::new();
    let (mut pushed, mut expected) = (0, 0);
    for chunk in common::chunks(input, sizes) {
        pushed += chunk.len();
        // A boundary whose line end starts in what was pushed: released up to its end, or
        // up to the CR of its CRLF when the LF is not pushed yet (then the LF goes later).
        while let Some((_, end)) = to_come.next_if(|&(start, _)| start < pushed) {
            expected = end.min(pushed);
        }
        let events = framer.push(chunk).expect("an input under MAX_EVENT_BYTES is never too large");
        if let Some(events) = events {
            let at = released.len();
            assert!(at + events.len() <= pushed, "released more than was pushed");
            assert_eq!(events[..], input[at..at + events.len()], "released bytes are not the input's, in order");
            released.extend_from_slice(&events);
        }
        assert_eq!(released.len(), expected, "released up to {}, the last boundary is at {expected}", released.len());
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

/// Where the blank lines that end events are in `input`: each one's line end, from its
/// first byte to just past it. Lines end at a CR, at an LF that does not follow a CR, or
/// at a CRLF; a blank line ends an event when a line that is not blank came before it
/// since the last one that did.
fn boundaries(input: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut line_start, mut in_event) = (0, false);
    for (i, &byte) in input.iter().enumerate() {
        if byte == b'\n' && i > 0 && input[i - 1] == b'\r' {
            line_start = i + 1;
            continue;
        }
        if byte != b'\r' && byte != b'\n' {
            continue;
        }
        if i > line_start {
            in_event = true;
        } else if in_event {
            in_event = false;
            let crlf = byte == b'\r' && input.get(i + 1) == Some(&b'\n');
            out.push((i, if crlf { i + 2 } else { i + 1 }));
        }
        line_start = i + 1;
    }
    out
}
