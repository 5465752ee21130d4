//! The frames of a message being reassembled.

use bytes::{Bytes, BytesMut};

/// Frame payloads of 16 KiB or more are kept as they arrived (slices of
/// the input, not copied) until the last frame; smaller ones are copied
/// together, so a peer sending many tiny frames costs no per-frame
/// bookkeeping and pins no input buffers.
const KEEP: usize = 16 * 1024;

/// A message's payload so far. The whole message is joined once, when its
/// last frame arrives: one allocation of the exact size and one copy,
/// however many frames it came in (growing one buffer frame by frame
/// copied large messages several times over, into fresh allocations).
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    /// Large payloads, and small ones already gathered, in order.
    kept: Vec<Bytes>,
    /// Small payloads after the last kept one.
    small: BytesMut,
    /// Octets in `kept` and `small`.
    len: usize,
}

impl Pieces {
    /// Octets so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends a frame's payload.
    pub(crate) fn push(&mut self, payload: Bytes) {
        self.len += payload.len();
        if payload.len() < KEEP {
            self.small.extend_from_slice(&payload);
            return;
        }
        if !self.small.is_empty() {
            self.kept.push(self.small.split().freeze());
        }
        self.kept.push(payload);
    }

    /// The payload with `last` appended, leaving this empty. A message in
    /// one frame, or in one kept payload, is returned without a copy.
    pub(crate) fn finish(&mut self, last: Bytes) -> Bytes {
        if self.len == 0 {
            // A message in one frame (or after empty ones): as it arrived.
            return last;
        }
        self.push(last);
        let len = std::mem::take(&mut self.len);
        if self.small.is_empty() && self.kept.len() <= 1 {
            return self.kept.pop().unwrap_or_default();
        }
        if self.kept.is_empty() {
            return self.small.split().freeze();
        }
        let mut whole = BytesMut::with_capacity(len);
        for piece in self.kept.drain(..) {
            whole.extend_from_slice(&piece);
        }
        whole.extend_from_slice(&self.small.split());
        whole.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(octet: u8, len: usize) -> Bytes {
        Bytes::from(vec![octet; len])
    }

    #[test]
    fn frames_are_joined_in_order() {
        let mut pieces = Pieces::default();
        let parts = [bytes(1, 3), bytes(2, KEEP), bytes(3, 5), bytes(4, KEEP + 1)];
        let mut expected = Vec::new();
        for part in &parts {
            expected.extend_from_slice(part);
            pieces.push(part.clone());
        }
        assert_eq!(pieces.len(), expected.len());
        let last = bytes(5, 2);
        expected.extend_from_slice(&last);
        let whole = pieces.finish(last);
        assert_eq!(&whole[..], &expected[..]);
        assert_eq!(pieces.len(), 0);
        // Reusable for the next message.
        assert_eq!(&pieces.finish(bytes(6, 1))[..], &[6]);
    }

    #[test]
    fn a_single_large_payload_is_not_copied() {
        let mut pieces = Pieces::default();
        let big = bytes(7, KEEP);
        pieces.push(Bytes::new());
        let whole = pieces.finish(big.clone());
        assert_eq!(whole.as_ptr(), big.as_ptr());
    }

    #[test]
    fn a_message_in_one_small_frame_is_not_copied() {
        let mut pieces = Pieces::default();
        let small = bytes(8, 100);
        assert_eq!(pieces.finish(small.clone()).as_ptr(), small.as_ptr());
    }

    #[test]
    fn tiny_frames_are_gathered_not_kept_one_by_one() {
        let mut pieces = Pieces::default();
        for i in 0..10_000u32 {
            pieces.push(Bytes::from(vec![i as u8]));
        }
        assert!(pieces.kept.is_empty());
        assert_eq!(pieces.finish(Bytes::new()).len(), 10_000);
    }
}
