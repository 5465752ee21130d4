//! What a driver's connection does, as `tracing` events (feature
//! `tracing`, which both drivers turn on). Nothing is recorded, and next
//! to nothing is spent, unless the application installs a subscriber.
//!
//! | target | level | event |
//! |---|---|---|
//! | `beep::frame` | TRACE | each frame header line, with `peer` and `dir` (`>` sent, `<` received) |
//! | `beep::channel` | DEBUG | a channel opened (`channel`, `profile`, `by` = `us`/`peer`) or closed |
//! | `beep::session` | DEBUG | the connection ended, with its `reason` |
//!
//! Frames are traced only on connections that started while TRACE was
//! enabled for `beep::frame`: the header scanner must see a direction's
//! bytes from the first one on, and a connection that would never be
//! traced keeps no scanner. Payloads are never recorded.

use std::fmt::Display;

#[cfg(feature = "tracing")]
use crate::frame::{DEFAULT_MAX_HEADER_LEN, Header, TRAILER, parse_header};

/// One direction's bytes cut into frames: each header line once it is
/// complete, the payload after it skipped. Stops at a line that does not
/// parse (the session reports that as a violation).
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct HeaderLines {
    pending: Vec<u8>,
    /// Payload and trailer octets still to skip.
    skip: usize,
    lost: bool,
}

#[cfg(feature = "tracing")]
impl HeaderLines {
    /// Calls `line` with each header line `bytes` completes (without its
    /// CRLF), or with a note when a line is not a frame header.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&str)) {
        while !bytes.is_empty() && !self.lost {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let end = memchr::memchr(b'\n', bytes).map(|i| i + 1);
            let take = end.unwrap_or(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if end.is_none() {
                self.lost = self.pending.len() > DEFAULT_MAX_HEADER_LEN;
                return;
            }
            let header = std::mem::take(&mut self.pending);
            let text = String::from_utf8_lossy(&header);
            match parse_header(&header, DEFAULT_MAX_HEADER_LEN) {
                Ok(Some((parsed, _))) => {
                    line(text.trim_end());
                    if let Header::Frame(h) = parsed {
                        self.skip = h.size as usize + TRAILER.len();
                    }
                }
                _ => {
                    line(&format!("(not a frame header: {text:?})"));
                    self.lost = true;
                }
            }
        }
    }
}

/// The tracing state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The peer, as events name it.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    peer: Option<String>,
    /// Sent and received header scanners, when frames are traced.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    frames: Option<Box<[HeaderLines; 2]>>,
}

impl Trace {
    /// Frames are traced if the subscriber wants them now.
    pub(crate) fn new() -> Self {
        #[cfg(feature = "tracing")]
        {
            let wanted = tracing::enabled!(target: "beep::frame", tracing::Level::TRACE);
            Trace {
                peer: None,
                frames: wanted.then(Box::default),
            }
        }
        #[cfg(not(feature = "tracing"))]
        Trace::default()
    }

    /// Names the peer in this connection's events.
    pub(crate) fn set_peer(&mut self, peer: &dyn Display) {
        #[cfg(feature = "tracing")]
        {
            self.peer = Some(peer.to_string());
        }
        #[cfg(not(feature = "tracing"))]
        let _ = peer;
    }

    /// Bytes received from the peer.
    pub(crate) fn received(&mut self, bytes: &[u8]) {
        #[cfg(feature = "tracing")]
        if let Some(frames) = &mut self.frames {
            let peer = self.peer.as_deref().unwrap_or("-");
            frames[1].feed(bytes, |line| {
                tracing::trace!(target: "beep::frame", peer, dir = "<", "{line}");
            });
        }
        #[cfg(not(feature = "tracing"))]
        let _ = bytes;
    }

    /// Bytes taken from the session to be sent.
    pub(crate) fn sent(&mut self, chunks: &[bytes::Bytes]) {
        #[cfg(feature = "tracing")]
        if let Some(frames) = &mut self.frames {
            let peer = self.peer.as_deref().unwrap_or("-");
            for chunk in chunks {
                frames[0].feed(chunk, |line| {
                    tracing::trace!(target: "beep::frame", peer, dir = ">", "{line}");
                });
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = chunks;
    }

    /// A channel opened: at our request (`by_us`) or the peer's.
    pub(crate) fn opened(&self, channel: u32, profile: &str, by_us: bool) {
        #[cfg(feature = "tracing")]
        {
            let peer = self.peer.as_deref().unwrap_or("-");
            let by = if by_us { "us" } else { "peer" };
            tracing::debug!(target: "beep::channel", peer, channel, profile, by, "channel opened");
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (channel, profile, by_us);
    }

    /// A channel closed.
    pub(crate) fn closed(&self, channel: u32) {
        #[cfg(feature = "tracing")]
        {
            let peer = self.peer.as_deref().unwrap_or("-");
            tracing::debug!(target: "beep::channel", peer, channel, "channel closed");
        }
        #[cfg(not(feature = "tracing"))]
        let _ = channel;
    }

    /// The connection ended.
    pub(crate) fn ended(&self, reason: &dyn Display) {
        #[cfg(feature = "tracing")]
        {
            let peer = self.peer.as_deref().unwrap_or("-");
            tracing::debug!(target: "beep::session", peer, %reason, "connection ended");
        }
        #[cfg(not(feature = "tracing"))]
        let _ = reason;
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    #[test]
    fn headers_split_anywhere_are_cut_into_frames_and_payloads_skipped() {
        // The last frame's payload is "END" (3 octets), then its trailer.
        let wire = b"RPY 0 0 . 0 5\r\nhelloEND\r\nSEQ 0 5 4096\r\nMSG 1 0 * 0 3\r\nENDEND\r\n";
        for split in 0..=wire.len() {
            let mut scanner = HeaderLines::default();
            let mut lines = Vec::new();
            scanner.feed(&wire[..split], |l| lines.push(l.to_owned()));
            scanner.feed(&wire[split..], |l| lines.push(l.to_owned()));
            assert_eq!(
                lines,
                ["RPY 0 0 . 0 5", "SEQ 0 5 4096", "MSG 1 0 * 0 3"],
                "split at {split}"
            );
            assert_eq!((scanner.skip, scanner.lost), (0, false), "split at {split}");
        }
    }

    #[test]
    fn a_line_that_is_no_header_is_named_once_and_scanning_stops() {
        let mut scanner = HeaderLines::default();
        let mut lines = Vec::new();
        scanner.feed(b"HELLO\r\nMSG 1 0 . 0 0\r\nEND\r\n", |l| {
            lines.push(l.to_owned())
        });
        assert_eq!(lines, [r#"(not a frame header: "HELLO\r\n")"#]);
    }

    #[test]
    fn an_endless_line_stops_the_scanner_without_growing_past_a_header() {
        let mut scanner = HeaderLines::default();
        let mut lines = Vec::new();
        for _ in 0..100 {
            scanner.feed(&[b'x'; 1024], |l| lines.push(l.to_owned()));
        }
        assert!(lines.is_empty() && scanner.lost);
        assert!(scanner.pending.len() <= DEFAULT_MAX_HEADER_LEN + 1024);
    }
}
