//! The `Content-Type` value and its parameters (RFC 2045 5.1).

use std::borrow::Cow;

use super::headers::trim_wsp;

/// A `Content-Type` value read as RFC 2045 5.1 writes it:
/// `type/subtype` followed by `; attribute=value` parameters, each value a
/// token or a quoted-string.
///
/// Reading is lenient: spaces around `=` and `;` are allowed, a parameter
/// without `=` is skipped, and one whose quoted-string never ends is
/// dropped with everything after it. RFC 822 comments and RFC 2231
/// continuations (`name*0=`) are not interpreted.
///
/// ```
/// use beep_proto::mime::ContentType;
/// let ct = ContentType::new(r#"text/plain; charset=utf-8; title="a \"b\"; c""#);
/// assert_eq!(ct.mime_type(), "text/plain");
/// assert_eq!(ct.param("CHARSET").as_deref(), Some("utf-8"));
/// assert_eq!(ct.param("title").as_deref(), Some(r#"a "b"; c"#));
/// assert_eq!(ct.param("format"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a> {
    value: &'a str,
}

impl<'a> ContentType<'a> {
    /// A view of the `Content-Type` value `value` (unfolded, as
    /// [`Message::content_type`](super::Message::content_type) gives it). Nothing is parsed until asked.
    ///
    /// ```
    /// use beep_proto::{Message, mime::ContentType};
    /// let m = Message::new("").with_header("Content-Type", "text/plain; format=flowed");
    /// let value = m.content_type();
    /// let ct = ContentType::new(&value);
    /// assert_eq!((ct.mime_type(), ct.param("format").as_deref()), ("text/plain", Some("flowed")));
    /// ```
    pub fn new(value: &'a str) -> Self {
        ContentType { value }
    }

    /// The whole value, as given.
    ///
    /// ```
    /// let ct = beep_proto::mime::ContentType::new("text/plain; charset=utf-8");
    /// assert_eq!(ct.as_str(), "text/plain; charset=utf-8");
    /// ```
    pub fn as_str(&self) -> &'a str {
        self.value
    }

    /// The `type/subtype`, before the first `;`, without surrounding spaces
    /// and tabs. It is as written: the names are case-insensitive
    /// (RFC 2045 5.1), so compare with [`str::eq_ignore_ascii_case`].
    ///
    /// ```
    /// let ct = beep_proto::mime::ContentType::new(" Text/Plain ;charset=utf-8");
    /// assert!(ct.mime_type().eq_ignore_ascii_case("text/plain"));
    /// ```
    pub fn mime_type(&self) -> &'a str {
        let end = self.value.find(';').unwrap_or(self.value.len());
        trim_wsp(&self.value[..end])
    }

    /// The parameters as `(attribute, value)` pairs, in order. A quoted
    /// value is unquoted and its backslash escapes (RFC 822 quoted-pair)
    /// are undone; only then is it copied, otherwise it is a slice of the
    /// value.
    ///
    /// ```
    /// let ct = beep_proto::mime::ContentType::new(r#"multipart/mixed; boundary="a;b"; x=1"#);
    /// let params: Vec<_> = ct.params().collect();
    /// assert_eq!(params, [("boundary", "a;b".into()), ("x", "1".into())]);
    /// ```
    pub fn params(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + use<'a> {
        Params { rest: self.value }
    }

    /// The value of the first parameter named `name`, compared without
    /// regard to case as RFC 2045 5.1 requires, or `None`. The value keeps
    /// its case: whether it matters depends on the parameter.
    ///
    /// ```
    /// let ct = beep_proto::mime::ContentType::new("text/plain; CharSet=UTF-8");
    /// assert_eq!(ct.param("charset").as_deref(), Some("UTF-8"));
    /// assert_eq!(ct.param("boundary"), None);
    /// ```
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Parameters after the first `;` of a `Content-Type` value.
struct Params<'a> {
    /// What is left to read, starting before the `;` of the next parameter.
    rest: &'a str,
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let semicolon = self.rest.find(';')?;
            let param = &self.rest[semicolon + 1..];
            // `attribute=`, unless a `;` (or the end) comes first.
            let Some(eq) = param
                .find(['=', ';'])
                .filter(|&i| param.as_bytes()[i] == b'=')
            else {
                self.rest = param;
                continue;
            };
            let name = trim_wsp(&param[..eq]);
            let after = param[eq + 1..].trim_start_matches([' ', '\t']);
            let value = if let Some(quoted) = after.strip_prefix('"') {
                let Some((value, rest)) = unquote(quoted) else {
                    // Unterminated: where it was meant to end is a guess.
                    self.rest = "";
                    return None;
                };
                // Anything between the closing quote and the next `;` is
                // not part of a well-formed value; it is skipped.
                self.rest = rest;
                value
            } else {
                let end = after.find(';').unwrap_or(after.len());
                self.rest = &after[end..];
                Cow::Borrowed(trim_wsp(&after[..end]))
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// The quoted-string that `quoted` starts with (its opening quote already
/// taken), with escapes undone, and what follows its closing quote; `None`
/// if it has no closing quote.
fn unquote(quoted: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut owned: Option<String> = None;
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = owned.map_or(Cow::Borrowed(&quoted[..i]), Cow::Owned);
                return Some((value, &quoted[i + 1..]));
            }
            '\\' => {
                let (_, escaped) = chars.next()?;
                owned
                    .get_or_insert_with(|| quoted[..i].to_owned())
                    .push(escaped);
            }
            c => {
                if let Some(s) = owned.as_mut() {
                    s.push(c);
                }
            }
        }
    }
    None
}
