//! Server-sent events, framed: bytes are passed on only in whole events, so a stream cut
//! mid-event can still be closed with a well-formed error event.

use bytes::{Bytes, BytesMut};

/// Largest single event accepted from an upstream; a larger one ends the stream.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Accumulates upstream bytes and releases them up to the last complete event.
#[derive(Debug, Default)]
pub struct SseFramer {
    buf: BytesMut,
}

#[derive(Debug, PartialEq, Eq)]
pub struct EventTooLarge;

impl SseFramer {
    /// Adds a chunk; returns every complete event now buffered (possibly several), as
    /// one contiguous slice of the original bytes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, EventTooLarge> {
        // Only the new bytes (and three before them, for a boundary split across
        // chunks) can hold a new boundary: scanning stays linear in the stream length.
        let scan_from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(chunk);
        match last_boundary(&self.buf[scan_from..]) {
            Some(end) => Ok(Some(self.buf.split_to(scan_from + end).freeze())),
            None if self.buf.len() > MAX_EVENT_BYTES => Err(EventTooLarge),
            None => Ok(None),
        }
    }

    /// Bytes after the last complete event (an unterminated tail), if any.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// The end offset (exclusive) of the last event boundary — a blank line, `\n\n` or
/// `\r\n\r\n` — in `bytes`.
fn last_boundary(bytes: &[u8]) -> Option<usize> {
    let mut i = bytes.len();
    while i >= 2 {
        if bytes[i - 1] == b'\n' {
            if bytes[i - 2] == b'\n' {
                return Some(i);
            }
            if i >= 4 && &bytes[i - 4..i] == b"\r\n\r\n" {
                return Some(i);
            }
        }
        i -= 1;
    }
    None
}

/// The first event in `events` (whole events) whose data is neither JSON nor `[DONE]`:
/// its offset, and the parser's complaint. Events without data (comments, keep-alives)
/// pass; no client could read the others.
pub fn first_non_json_event(events: &[u8]) -> Option<(usize, String)> {
    let (mut start, mut at) = (0, 0);
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for line in events.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if has_data && data != b"[DONE]" {
                if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&data) {
                    return Some((start, err.to_string()));
                }
            }
            (start, has_data) = (at, false);
            data.clear();
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            has_data = true;
        }
    }
    None
}

/// Whether `events` holds the OpenAI end-of-stream marker.
pub fn has_done_marker(events: &[u8]) -> bool {
    events.windows(12).any(|w| w == b"data: [DONE]") || events.windows(11).any(|w| w == b"data:[DONE]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_whole_events_only() {
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: {\"a\"").unwrap(), None);
        assert_eq!(f.push(b":1}\n\ndata: {\"b\"").unwrap().unwrap(), &b"data: {\"a\":1}\n\n"[..]);
        assert_eq!(f.push(b":2}\n").unwrap(), None);
        assert_eq!(f.push(b"\n").unwrap().unwrap(), &b"data: {\"b\":2}\n\n"[..]);
        assert_eq!(f.take_rest(), None);
    }

    #[test]
    fn releases_several_events_in_one_slice() {
        let mut f = SseFramer::default();
        let out = f.push(b"data: 1\n\ndata: 2\n\ndata: 3").unwrap().unwrap();
        assert_eq!(out, &b"data: 1\n\ndata: 2\n\n"[..]);
        assert_eq!(f.take_rest().unwrap(), &b"data: 3"[..]);
    }

    #[test]
    fn handles_crlf_boundaries_split_across_chunks() {
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: x\r\n\r").unwrap(), None);
        assert_eq!(f.push(b"\n").unwrap().unwrap(), &b"data: x\r\n\r\n"[..]);
    }

    #[test]
    fn refuses_an_unbounded_event() {
        let mut f = SseFramer::default();
        let big = vec![b'x'; MAX_EVENT_BYTES];
        assert_eq!(f.push(b"data: ").unwrap(), None);
        assert_eq!(f.push(&big), Err(EventTooLarge));
    }

    #[test]
    fn finds_the_first_event_that_is_not_json() {
        assert_eq!(first_non_json_event(b"data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n"), None);
        assert_eq!(first_non_json_event(b"event: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"), None, "data lines join");
        let events = b"data: {\"a\":1}\n\nnot a field\n\ndata: {oops}\n\ndata: {}\n\n";
        let (at, why) = first_non_json_event(events).unwrap();
        assert_eq!(&events[at..], b"data: {oops}\n\ndata: {}\n\n");
        assert!(why.contains("key must be a string"), "{why}");
        assert!(first_non_json_event(b"data: <html>\n\n").is_some_and(|(at, _)| at == 0));
    }

    #[test]
    fn finds_the_done_marker() {
        assert!(has_done_marker(b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(!has_done_marker(b"data: {\"content\":\"DONE\"}\n\n"));
    }
}
