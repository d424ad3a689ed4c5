//! `parse_verdict` over any text a judge model may answer with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tierwise::escalate::judge::parse_verdict;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if parse_verdict(&text).is_ok() {
        assert!(text.contains("accept"), "a verdict without `accept`: {text:?}");
    }
});
