//! Shared by the targets: one fuzz input cut into the chunks a network would deliver.

/// Splits `data` into chunk sizes and payload: the first byte's low four bits say how many
/// of the following bytes are sizes (0 to 15); the rest is the payload.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(first & 0x0f).min(rest.len()))
}

/// `payload` in chunks of `size + 1` bytes (1 to 256), the sizes used in turn; one chunk
/// when there are no sizes.
pub fn chunks<'a>(payload: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = payload;
    let mut sizes = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes.next().map_or(rest.len(), |&s| usize::from(s) + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}
