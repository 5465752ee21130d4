//! Reading a header block: lines, unfolding, field names (RFC 822 3.1).

use std::borrow::Cow;

/// The header lines of a block, unfolded (see [`Message::headers`]).
pub(super) struct Headers<'a> {
    /// What is left of the block.
    pub(super) rest: &'a [u8],
}

impl<'a> Headers<'a> {
    /// The next line without its line end (CRLF or LF), or `None` at the
    /// empty line that ends the block or at the end of the input.
    fn line(&mut self) -> Option<&'a [u8]> {
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(lf) => (&self.rest[..lf], &self.rest[lf + 1..]),
            None => (self.rest, &b""[..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.rest = b"";
            return None;
        }
        self.rest = rest;
        Some(line)
    }

    /// The next line if it continues the one before (starts with a space or
    /// a tab).
    fn continuation(&mut self) -> Option<&'a [u8]> {
        if matches!(self.rest.first(), Some(b' ' | b'\t')) {
            self.line()
        } else {
            None
        }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.line()?;
            // A continuation with nothing to continue cannot come from
            // `from_entity` or `with_header`; skip it.
            let Some(colon) = memchr::memchr(b':', line).filter(|_| !is_wsp(line[0])) else {
                continue;
            };
            let name = std::str::from_utf8(&line[..colon]);
            let first = std::str::from_utf8(&line[colon + 1..]);
            let mut utf8 = name.is_ok() && first.is_ok();
            let mut value = Cow::Borrowed(trim_wsp(first.unwrap_or("")));
            while let Some(more) = self.continuation() {
                match std::str::from_utf8(more) {
                    Ok(more) => push_piece(&mut value, more),
                    Err(_) => utf8 = false,
                }
            }
            if let (true, Ok(name)) = (utf8, name) {
                return Some((trim_wsp(name), value));
            }
        }
    }
}

/// Adds one line's worth of a folded value to `value`: the line break
/// between them reads as one space, and blank pieces add nothing.
pub(super) fn push_piece<'a>(value: &mut Cow<'a, str>, piece: &'a str) {
    let piece = trim_wsp(piece);
    if piece.is_empty() {
        return;
    }
    if value.is_empty() {
        *value = Cow::Borrowed(piece);
        return;
    }
    let value = value.to_mut();
    value.push(' ');
    value.push_str(piece);
}

/// Space or tab: RFC 822's LWSP-char, the whitespace of header lines.
pub(super) fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// `s` without the spaces and tabs around it.
pub(super) fn trim_wsp(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// An RFC 822 field name (3.1.2): printable ASCII other than `:`, at least
/// one.
pub(super) fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':')
}

/// Length of the header block at the start of `entity`, its terminating
/// empty line included, or `None` if the entity does not start with one.
/// Lines end in CRLF or in a bare LF.
pub(crate) fn header_block_len(entity: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let rest = &entity[pos..];
        if rest.starts_with(b"\n") {
            return Some(pos + 1);
        }
        if rest.starts_with(b"\r\n") {
            return Some(pos + 2);
        }
        // A header line is `name: value` or a folded continuation. The
        // name is checked first, so a body without a header block is told
        // apart without searching it for a line end.
        let continuation = pos > 0 && matches!(rest.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name_len = rest
                .iter()
                .position(|&b| !b.is_ascii_graphic() || b == b':')?;
            if name_len == 0 || rest[name_len] != b':' {
                return None;
            }
        }
        pos += memchr::memchr(b'\n', rest)? + 1;
    }
}
