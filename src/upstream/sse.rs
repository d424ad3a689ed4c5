//! Server-sent events: the framer releases bytes only in whole events, so a stream cut
//! mid-event can still be closed with a well-formed error event; [`events`] is the one
//! reader of what a slice of whole events says (pass-through, buffering, the Anthropic
//! translation and usage counting all read events through it).

use std::borrow::Cow;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Largest single event accepted from an upstream; a larger one ends the stream.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Accumulates upstream bytes and releases them up to the last complete event.
///
/// Lines end at CRLF, LF or a lone CR, and a blank line ends an event (the WHATWG
/// event-stream rules), so `\n\n`, `\r\n\r\n`, `\r\r`, `\n\r\n` and the other mixes all
/// end one. Each byte is scanned once: the scan state carries over from push to push.
#[derive(Debug, Default)]
pub struct SseFramer {
    /// Bytes not yet released: after a push, at most the start of one event (and any
    /// blank lines before it).
    buf: BytesMut,
    /// How much of `buf` has been scanned, so a push scans only the new bytes.
    scanned: usize,
    /// The line state at `scanned`.
    scan: LineScan,
}

#[derive(Debug, PartialEq, Eq)]
pub struct EventTooLarge;

impl SseFramer {
    /// Adds a chunk; returns every complete event now buffered (possibly several), as
    /// one contiguous slice of the original bytes.
    ///
    /// A slice ends with the blank line's line end. When that is a CR at the end of the
    /// chunk, the slice ends there and does not wait for a possible LF: an LF that then
    /// starts the next chunk completes the CRLF (it ends no line) and goes out at the
    /// start of the next slice, where a parser of that slice alone sees an empty line,
    /// which dispatches nothing. Blank lines before an event go out with it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let boundary = self.scan.last_boundary(&self.buf[self.scanned..]).map(|end| self.scanned + end);
        self.scanned = self.buf.len();
        match boundary {
            Some(end) => {
                self.scanned -= end;
                Ok(Some(self.buf.split_to(end).freeze()))
            }
            None if self.buf.len() > MAX_EVENT_BYTES => Err(EventTooLarge),
            None => Ok(None),
        }
    }

    /// At the end of the stream: the bytes after the last complete event (an
    /// unterminated event), unless they are only whitespace.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        (self.scanned, self.scan) = (0, LineScan::default());
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// Where the scan stands after the bytes scanned so far.
#[derive(Debug, Default, Clone, Copy)]
struct LineScan {
    /// The last byte was a CR: an LF now completes that CRLF and ends no line.
    after_cr: bool,
    /// The current line has bytes: a line end now ends a line that is not blank.
    mid_line: bool,
    /// A line that is not blank came since the last event's end: a blank line now ends
    /// an event. (Blank lines before it end nothing.)
    in_event: bool,
}

impl LineScan {
    /// Scans `bytes`, the ones after those already scanned; returns the end offset
    /// (exclusive, in `bytes`) of the last event boundary among them: just past the line
    /// end of a blank line, including the LF of a CRLF when it is in `bytes`.
    fn last_boundary(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut boundary = None;
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            if byte != b'\r' && byte != b'\n' {
                // The rest of the line, up to its line end, in one step.
                i += bytes[i..].iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len() - i);
                *self = LineScan { after_cr: false, mid_line: true, in_event: true };
                continue;
            }
            i += 1;
            if byte == b'\n' && self.after_cr {
                self.after_cr = false;
                if boundary == Some(i - 1) {
                    boundary = Some(i);
                }
                continue;
            }
            self.after_cr = byte == b'\r';
            if self.mid_line {
                self.mid_line = false;
            } else if self.in_event {
                self.in_event = false;
                boundary = Some(i);
            }
        }
        boundary
    }
}

/// The lines of `bytes`, each with the offset just past its line end (CRLF, LF or a lone
/// CR); the last line may have none. A CR at the end of `bytes` ends its line, so an LF
/// at the start is an empty line of its own: how a framer slice that starts with the
/// second half of a split CRLF reads.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = &bytes[at..];
        if rest.is_empty() {
            return None;
        }
        let (line, len) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(end) if rest[end..].starts_with(b"\r\n") => (&rest[..end], end + 2),
            Some(end) => (&rest[..end], end + 1),
            None => (rest, rest.len()),
        };
        at += len;
        Some((line, at))
    })
}

/// One event of a slice of whole SSE events, as the WHATWG rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Its `event:` field, if it has one.
    pub name: Option<&'a [u8]>,
    /// Its `data:` lines joined with `\n` (one space after the colon dropped); `None`
    /// for an event without data (a comment, a keep-alive), which dispatches nothing.
    pub data: Option<Cow<'a, [u8]>>,
    /// The bytes it spans in the slice, its blank line included: for passing it on as
    /// it came.
    pub raw: Range<usize>,
}

impl Event<'_> {
    /// Whether this is OpenAI's end-of-stream marker, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.as_deref() == Some(b"[DONE]")
    }
}

/// The events in `bytes`, a slice of whole events as [`SseFramer`] releases them (an
/// unterminated tail counts as one more event). Lines end at CRLF, LF or a lone CR; a
/// blank line ends an event; `data:` lines join; comments and unknown fields are skipped.
pub fn events(bytes: &[u8]) -> impl Iterator<Item = Event<'_>> {
    let mut lines = lines(bytes);
    let mut start = 0;
    std::iter::from_fn(move || {
        let mut name = None;
        let mut data: Option<Cow<'_, [u8]>> = None;
        let mut seen_field = false;
        loop {
            let Some((line, end)) = lines.next() else {
                // The end: a last event without its blank line, if it had any field.
                let raw = start..bytes.len();
                start = bytes.len();
                return seen_field.then_some(Event { name, data, raw });
            };
            if line.is_empty() {
                if !seen_field {
                    // A blank line between events, or one that ends a comment-only event.
                    continue;
                }
                let raw = start..end;
                start = end;
                return Some(Event { name, data, raw });
            }
            if line.starts_with(b":") {
                continue; // a comment
            }
            if !seen_field {
                start = end - line.len() - line_end_len(bytes, end);
            }
            seen_field = true;
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &line[line.len()..]),
            };
            match field {
                b"data" => {
                    data = Some(match data.take() {
                        None => Cow::Borrowed(value),
                        Some(mut joined) => {
                            let joined_mut = joined.to_mut();
                            joined_mut.push(b'\n');
                            joined_mut.extend_from_slice(value);
                            joined
                        }
                    });
                }
                b"event" => name = Some(value),
                _ => {}
            }
        }
    })
}

/// How many bytes of line end precede offset `end` (just past a line end).
fn line_end_len(bytes: &[u8], end: usize) -> usize {
    match (end.checked_sub(2).and_then(|i| bytes.get(i..end)), end.checked_sub(1).and_then(|i| bytes.get(i))) {
        (Some(b"\r\n"), _) => 2,
        (_, Some(b'\r' | b'\n')) => 1,
        _ => 0,
    }
}

/// The first event in `events` (whole events) whose data is neither JSON nor `[DONE]`:
/// its offset, and the parser's complaint. Events without data (comments, keep-alives)
/// pass; no client could read the others.
pub fn first_non_json_event(events: &[u8]) -> Option<(usize, String)> {
    self::events(events).find_map(|event| {
        let data = event.data.as_deref().filter(|_| !event.is_done())?;
        let err = serde_json::from_slice::<serde::de::IgnoredAny>(data).err()?;
        Some((event.raw.start, err.to_string()))
    })
}

/// Whether `events` holds the OpenAI end-of-stream marker.
pub fn has_done_marker(events: &[u8]) -> bool {
    self::events(events).any(|event| event.is_done())
}

/// Whether `events` holds an event that ends a Responses stream: `response.completed`,
/// `response.incomplete`, `response.failed` or `error`.
pub fn ends_responses_stream(events: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    self::events(events).any(|event| {
        let Some(data) = event.data.as_deref() else { return false };
        let kind = serde_json::from_slice::<Typed<'_>>(data).ok().and_then(|t| t.kind);
        matches!(kind.as_deref(), Some("response.completed" | "response.incomplete" | "response.failed" | "error"))
    })
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
    fn ends_an_event_at_a_blank_line_with_any_line_ends() {
        for first in ["\n", "\r", "\r\n"] {
            for blank in ["\n", "\r", "\r\n"] {
                let event = format!("event: x{first}data: 1{first}{blank}");
                let mut f = SseFramer::default();
                let out = f.push(format!("{event}data: 2").as_bytes()).unwrap();
                if (first, blank) == ("\r", "\n") {
                    // CR then LF is one line end, a CRLF, not a line end and a blank line.
                    assert_eq!(out, None);
                    continue;
                }
                assert_eq!(out.as_deref(), Some(event.as_bytes()), "{event:?}");
                assert_eq!(f.take_rest().unwrap(), &b"data: 2"[..], "{event:?}");
            }
            let lines = format!("data: 1{first}data: 2{first}");
            assert_eq!(SseFramer::default().push(lines.as_bytes()).unwrap(), None, "{lines:?} has no blank line");
        }
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: 1\r").unwrap(), None);
        assert_eq!(f.push(b"\n").unwrap(), None, "CR, then LF in the next chunk, is not a blank line");
        assert_eq!(f.push(b"\r").unwrap().unwrap(), &b"data: 1\r\n\r"[..], "a CR ends the event at once");
        assert_eq!(f.push(b"\ndata: 2\r\n").unwrap(), None, "that LF completes the CRLF: no blank line");
        assert_eq!(f.push(b"\r\n").unwrap().unwrap(), &b"\ndata: 2\r\n\r\n"[..]);
        assert_eq!(f.take_rest(), None);
    }

    #[test]
    fn frames_mixed_line_ends_alike_at_every_split() {
        let input: &[u8] = b"event: a\r\ndata: 1\r\n\r\n: c\n\ndata: 2\r\rdata: 3\n\r\ndata: 4\r\n\n\
            data: 5\n\r\n\nid: 6\rdata: 6\r\n\r\ndata: [DONE]\r\rdata: tail\r";
        let want: Vec<Vec<&str>> = vec![
            vec!["event: a", "data: 1"],
            vec![": c"],
            vec!["data: 2"],
            vec!["data: 3"],
            vec!["data: 4"],
            vec!["data: 5"],
            vec!["id: 6", "data: 6"],
            vec!["data: [DONE]"],
        ];
        let check = |chunks: &[&[u8]]| {
            let (released, rest) = frame(chunks);
            assert_eq!(events(&released), want, "{chunks:?}");
            assert_eq!(rest.as_deref(), Some(&b"data: tail\r"[..]), "{chunks:?}");
            assert_eq!([released.concat(), rest.unwrap().to_vec()].concat(), input, "{chunks:?}");
        };
        for i in 0..=input.len() {
            check(&[&input[..i], &input[i..]]);
            for j in i..=input.len() {
                check(&[&input[..i], &input[i..j], &input[j..]]);
            }
        }
        check(&input.chunks(1).collect::<Vec<_>>());
    }

    #[test]
    fn keeps_an_unterminated_last_event_for_take_rest() {
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: 1\r\rdata: [DONE]\r").unwrap().unwrap(), &b"data: 1\r\r"[..]);
        assert_eq!(f.take_rest().unwrap(), &b"data: [DONE]\r"[..]);
        assert_eq!(f.take_rest(), None, "taken once");

        // Left over: only the LF of a CRLF after the last event, and blank lines.
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: 1\r\r").unwrap().unwrap(), &b"data: 1\r\r"[..]);
        assert_eq!(f.push(b"\n\r\n\n").unwrap(), None, "blank lines alone end no event");
        assert_eq!(f.take_rest(), None);
    }

    #[test]
    fn counts_an_event_held_over_many_pushes_against_the_limit() {
        let piece = vec![b'x'; 64 * 1024];
        let pieces = MAX_EVENT_BYTES / piece.len() - 1;
        let mut f = SseFramer::default();
        assert_eq!(f.push(b"data: "), Ok(None));
        for _ in 0..pieces {
            assert_eq!(f.push(&piece), Ok(None));
        }
        let event = f.push(b"\r").and_then(|_| f.push(b"\r")).unwrap().unwrap();
        assert_eq!(event.len(), 6 + pieces * piece.len() + 2);

        assert_eq!(f.push(b"data: "), Ok(None));
        let pushes = std::iter::repeat_with(|| f.push(&piece)).take(pieces + 2);
        assert_eq!(pushes.last(), Some(Err(EventTooLarge)));
    }

    #[test]
    fn splits_lines_at_crlf_lf_and_cr() {
        let got: Vec<_> = lines(b"a\r\nb\nc\rd\r\r\ne").collect();
        let want: [(&[u8], usize); 6] = [(b"a", 3), (b"b", 5), (b"c", 7), (b"d", 9), (b"", 11), (b"e", 12)];
        assert_eq!(got, want);
        assert_eq!(lines(b"\nx\r").collect::<Vec<_>>(), [(&b""[..], 1), (&b"x"[..], 3)]);
    }

    /// `chunks` through one framer: the slices it released, then what `take_rest` gave.
    fn frame(chunks: &[&[u8]]) -> (Vec<Bytes>, Option<Bytes>) {
        let mut f = SseFramer::default();
        let released = chunks.iter().filter_map(|chunk| f.push(chunk).unwrap()).collect();
        (released, f.take_rest())
    }

    /// The events in `slices`, each slice read alone as a consumer reads it: every event's
    /// lines, without events that hold no line. Asserts that no slice ends mid-event.
    fn events(slices: &[Bytes]) -> Vec<Vec<&str>> {
        let mut events = Vec::new();
        for slice in slices {
            let mut event = Vec::new();
            for (line, _) in lines(slice) {
                if !line.is_empty() {
                    event.push(std::str::from_utf8(line).unwrap());
                } else if !event.is_empty() {
                    events.push(std::mem::take(&mut event));
                }
            }
            assert!(event.is_empty(), "a slice ends mid-event: {slice:?}");
        }
        events
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
        assert_eq!(first_non_json_event(b"data: {\"a\":\rdata: 1}\r\rdata: [DONE]\r\r"), None, "lone CRs end lines");
        let events = b"data: {}\r\r\ndata: {oops}\n\r\n";
        let (at, _) = first_non_json_event(events).unwrap();
        assert_eq!(&events[at..], b"data: {oops}\n\r\n");
    }

    #[test]
    fn reads_events_with_names_joined_data_and_their_bytes() {
        let bytes =
            b": keep-alive\n\nevent: delta\r\ndata: {\"a\":\r\ndata:1}\r\n\r\nid: 7\ndata: [DONE]\n\ndata: tail";
        let got: Vec<Event> = super::events(bytes).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].name, Some(&b"delta"[..]));
        assert_eq!(got[0].data.as_deref(), Some(&b"{\"a\":\n1}"[..]));
        assert_eq!(&bytes[got[0].raw.clone()], b"event: delta\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n");
        assert!(got[1].is_done());
        assert_eq!(got[2].data.as_deref(), Some(&b"tail"[..]), "an unterminated tail is one more event");
        assert_eq!(super::events(b": only a comment\n\n").count(), 0);
    }

    #[test]
    fn finds_the_done_marker() {
        assert!(has_done_marker(b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(!has_done_marker(b"data: {\"content\":\"DONE\"}\n\n"));
    }
}
