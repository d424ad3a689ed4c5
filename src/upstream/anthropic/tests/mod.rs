//! Translation tests, against the recorded and documented bodies in
//! `tests/fixtures/anthropic/` (see its README for which is which).

mod error;
mod request;
mod response;
mod stream;

/// A fixture's bytes, read at compile time.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/anthropic/", $name)).as_slice()
    };
}
pub(crate) use fixture;

/// The `created` every test translation uses.
const CREATED: u64 = 1_700_000_000;
