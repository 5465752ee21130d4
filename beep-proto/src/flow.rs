//! SEQ flow control (RFC 3081 3.1): one window per channel and direction,
//! sequence numbers modulo 2^32 compared as RFC 1982 serial numbers.

use crate::config::DEFAULT_WINDOW;
use crate::frame::{MAX_31BIT, SeqFrame};

/// True if serial number `a` is at or before `b` (RFC 1982, RFC 3080 2.2.1.2).
pub(crate) fn serial_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) <= MAX_31BIT
}

/// The octets `seq` takes on the wire (`SeqFrame::encode`): a SEQ due
/// but not yet written counts in the session's queued output as it did
/// when it was encoded at once.
#[inline]
pub(crate) fn seq_len(seq: &SeqFrame) -> usize {
    fn digits(n: u32) -> usize {
        n.checked_ilog10().map_or(1, |d| d as usize + 1)
    }
    "SEQ".len() + 3 + digits(seq.channel) + digits(seq.ackno) + digits(seq.window) + 2
}

/// What we may send on a channel: octets `next .. limit`.
#[derive(Debug, Clone)]
pub(crate) struct SendWindow {
    /// Sequence number of our next payload octet.
    next: u32,
    /// One past the last octet the peer can take.
    limit: u32,
}

/// A SEQ frame acknowledged octets we never sent (RFC 3081 3.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckBeyondSent {
    pub(crate) sent: u32,
}

impl SendWindow {
    pub(crate) fn new() -> Self {
        SendWindow {
            next: 0,
            limit: DEFAULT_WINDOW,
        }
    }

    /// A window whose next octet is `next`, as if that much had been sent.
    #[cfg(test)]
    pub(crate) fn starting_at(next: u32) -> Self {
        SendWindow {
            next,
            limit: next.wrapping_add(DEFAULT_WINDOW),
        }
    }

    /// The seqno of the next frame.
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    /// Octets we may send now.
    pub(crate) fn available(&self) -> u32 {
        let room = self.limit.wrapping_sub(self.next);
        if room <= MAX_31BIT { room } else { 0 }
    }

    /// Records `n` octets sent; callers never exceed [`Self::available`].
    pub(crate) fn sent(&mut self, n: u32) {
        debug_assert!(n <= self.available());
        self.next = self.next.wrapping_add(n);
    }

    /// Applies the peer's SEQ. The window only ever grows: a peer shrinking
    /// it (RFC 3081 3.1.3 says it should not) cannot take back octets it
    /// already allowed. Returns true if more octets became available.
    pub(crate) fn on_seq(&mut self, ackno: u32, window: u32) -> Result<bool, AckBeyondSent> {
        if !serial_le(ackno, self.next) {
            return Err(AckBeyondSent { sent: self.next });
        }
        let limit = ackno.wrapping_add(window);
        if serial_le(limit, self.limit) {
            return Ok(false);
        }
        self.limit = limit;
        Ok(true)
    }
}

/// What the peer may send us on a channel.
///
/// Octets move through three positions: received (`next`), given back by
/// the application (`consumed`), and the right edge we last advertised.
/// The right edge is `consumed + window` at most, so the octets we hold for
/// the application never exceed the window, whatever the peer does.
#[derive(Debug, Clone)]
pub(crate) struct RecvWindow {
    /// The window size now.
    window: u32,
    /// The size the window may grow to by itself (see
    /// [`RecvWindow::growth_wanted`]).
    max: u32,
    /// The peer pressed on the window (see [`RecvWindow::consumed`]).
    exhausted: bool,
    /// Seqno of the next octet we expect.
    next: u32,
    /// Octets before this position have been given back.
    consumed: u32,
    /// One past the last octet the peer may send.
    advertised: u32,
}

impl RecvWindow {
    pub(crate) fn new(window: u32, max: u32) -> Self {
        let window = window.clamp(1, MAX_31BIT);
        RecvWindow {
            window,
            max: max.clamp(window, MAX_31BIT),
            exhausted: false,
            next: 0,
            consumed: 0,
            advertised: DEFAULT_WINDOW,
        }
    }

    /// A window expecting `next`, as if that much had been received and consumed.
    #[cfg(test)]
    pub(crate) fn starting_at(next: u32, window: u32) -> Self {
        RecvWindow {
            window,
            max: window,
            exhausted: false,
            next,
            consumed: next,
            advertised: next.wrapping_add(DEFAULT_WINDOW),
        }
    }

    /// The SEQ to send before any message on a new channel whose window
    /// differs from the 4096 every channel starts with (RFC 3081 3.1.4).
    pub(crate) fn initial_seq(&mut self, channel: u32) -> Option<SeqFrame> {
        if self.window <= DEFAULT_WINDOW {
            return None;
        }
        self.advertised = self.window;
        Some(SeqFrame {
            channel,
            ackno: 0,
            window: self.window,
        })
    }

    /// Changes the window size. A larger window is advertised at once when
    /// `advertise` (the channel is running); a smaller one takes effect as
    /// the peer uses the credit already granted, which is never taken back
    /// (RFC 3081 3.1.4: a window should not shrink).
    pub(crate) fn resize(
        &mut self,
        channel: u32,
        window: u32,
        advertise: bool,
    ) -> Option<SeqFrame> {
        self.window = window.clamp(1, MAX_31BIT);
        // The application chose this size: it no longer grows by itself.
        self.max = self.window;
        if !advertise {
            return None;
        }
        let edge = self.consumed.wrapping_add(self.window);
        let growth = edge.wrapping_sub(self.advertised);
        if growth == 0 || growth > MAX_31BIT {
            return None;
        }
        self.advertised = edge;
        Some(SeqFrame {
            channel,
            ackno: self.next,
            window: edge.wrapping_sub(self.next),
        })
    }

    /// The seqno the next frame must carry (RFC 3080 2.2.1.1).
    pub(crate) fn expected(&self) -> u32 {
        self.next
    }

    /// Octets the peer may still send.
    pub(crate) fn available(&self) -> u32 {
        let room = self.advertised.wrapping_sub(self.next);
        if room <= MAX_31BIT { room } else { 0 }
    }

    /// Records `n` octets received; callers checked [`Self::available`].
    pub(crate) fn received(&mut self, n: u32) {
        self.next = self.next.wrapping_add(n);
        // The peer pressed on the window: it got into the last quarter
        // before our SEQ (which reopens half a window at a time) came back,
        // or it sends frames so large that few fit (a bulk transfer).
        if n > 0 && (self.available() < self.window / 4 || n > self.window / 8) {
            self.exhausted = true;
        }
    }

    /// The window size now.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// True if the window may grow at the next [`RecvWindow::consumed`]:
    /// the peer pressed on it, and it is below its maximum.
    pub(crate) fn may_grow(&self) -> bool {
        self.exhausted && self.window < self.max
    }

    /// The application gave back `n` octets. Returns the SEQ to send once
    /// at least half a window can be reopened (RFC 3081 3.1: fewer, larger
    /// updates, and the peer never runs below half a window for our sake).
    ///
    /// The window grows first, by up to `room` octets (what the session's
    /// budget has left), when the peer pressed on it since the last time:
    /// it got into the last quarter before our SEQ came back (a SEQ
    /// reopens half a window at a time, so the window did not turn over
    /// fast enough), or it sent a frame larger than an eighth of the
    /// window (a bulk transfer, which wants several frames in flight). It
    /// doubles, up to its maximum: from 4096 octets to 1 MiB in eight
    /// steps. Request and reply traffic, small messages answered one by
    /// one, never presses and keeps 4096. No clock is needed: how the
    /// peer uses the window is the signal. The window grows only as the
    /// application gives octets back: one that takes nothing keeps the
    /// peer at the first window.
    pub(crate) fn consumed(&mut self, channel: u32, n: u32, room: u32) -> Option<SeqFrame> {
        let exhausted = std::mem::take(&mut self.exhausted);
        let held = self.next.wrapping_sub(self.consumed);
        self.consumed = self.consumed.wrapping_add(n.min(held));
        if exhausted && self.window < self.max {
            let wanted = self.window.saturating_mul(2).min(self.max) - self.window;
            self.window += wanted.min(room);
        }
        let edge = self.consumed.wrapping_add(self.window);
        let growth = edge.wrapping_sub(self.advertised);
        if growth > MAX_31BIT || growth < (self.window / 2).max(1) {
            return None;
        }
        self.advertised = edge;
        Some(SeqFrame {
            channel,
            ackno: self.next,
            window: edge.wrapping_sub(self.next),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_len_is_what_encode_writes() {
        for (channel, ackno, window) in [(0, 0, 0), (3, 4096, 4096), (MAX_31BIT, u32::MAX, 9)] {
            let seq = SeqFrame {
                channel,
                ackno,
                window,
            };
            let mut out = bytes::BytesMut::new();
            seq.encode(&mut out);
            assert_eq!(seq_len(&seq), out.len());
        }
    }

    #[test]
    fn rfc3081_3_1_1_channels_start_with_4096() {
        let send = SendWindow::new();
        assert_eq!((send.next(), send.available()), (0, 4096));
        let recv = RecvWindow::new(4096, 4096);
        assert_eq!((recv.expected(), recv.available()), (0, 4096));
    }

    #[test]
    fn rfc3081_3_1_3_ack_beyond_sent_is_an_error() {
        let mut send = SendWindow::new();
        send.sent(100);
        assert_eq!(send.on_seq(101, 4096), Err(AckBeyondSent { sent: 100 }));
        assert_eq!(send.on_seq(100, 4096), Ok(true));
        assert_eq!(send.available(), 4096);
    }

    #[test]
    fn rfc3081_3_1_window_never_shrinks() {
        let mut send = SendWindow::new();
        assert_eq!(send.on_seq(0, 100), Ok(false));
        assert_eq!(send.available(), 4096);
    }

    #[test]
    fn rfc3080_2_2_1_2_sequence_numbers_wrap_modulo_2_32() {
        let mut send = SendWindow {
            next: u32::MAX - 10,
            limit: u32::MAX - 10,
        };
        assert_eq!(send.on_seq(u32::MAX - 10, 100), Ok(true));
        assert_eq!(send.available(), 100);
        send.sent(100);
        assert_eq!(send.next(), 89);
        assert_eq!(send.on_seq(89, 50), Ok(true));
        assert_eq!(send.available(), 50);
    }

    #[test]
    fn rfc3081_3_1_seq_after_half_a_window() {
        let mut recv = RecvWindow::new(4096, 4096);
        recv.received(1000);
        assert_eq!(recv.consumed(3, 1000, 0), None);
        recv.received(1100);
        let seq = recv.consumed(3, 1100, 0).unwrap();
        assert_eq!(
            seq,
            SeqFrame {
                channel: 3,
                ackno: 2100,
                window: 4096
            }
        );
        assert_eq!(recv.available(), 4096);
    }

    #[test]
    fn held_octets_shrink_the_advertised_window() {
        let mut recv = RecvWindow::new(4096, 4096);
        recv.received(4096);
        assert_eq!(recv.available(), 0);
        // 3000 consumed, 1096 still held by the application.
        let seq = recv.consumed(1, 3000, 0).unwrap();
        assert_eq!((seq.ackno, seq.window), (4096, 3000));
    }

    #[test]
    fn large_windows_are_announced_first() {
        let mut recv = RecvWindow::new(1 << 20, 1 << 20);
        assert_eq!(
            recv.initial_seq(5),
            Some(SeqFrame {
                channel: 5,
                ackno: 0,
                window: 1 << 20
            })
        );
        assert_eq!(recv.available(), 1 << 20);
        assert_eq!(RecvWindow::new(4096, 4096).initial_seq(5), None);
    }

    #[test]
    fn a_window_the_peer_uses_up_doubles_up_to_its_maximum() {
        let mut recv = RecvWindow::new(4096, 16384);
        assert!(!recv.may_grow(), "nothing received yet");
        for expected in [8192, 16384, 16384] {
            // The peer sends all it may and runs dry; the application
            // takes it all at once.
            recv.received(recv.available());
            let seq = recv
                .consumed(1, u32::MAX, u32::MAX)
                .expect("a SEQ after a whole window");
            assert_eq!((recv.window(), seq.window), (expected, expected));
        }
    }

    #[test]
    fn growth_stops_at_the_room_the_session_has_left() {
        let mut recv = RecvWindow::new(4096, 1 << 20);
        recv.received(4096);
        recv.consumed(1, 4096, 1000);
        assert_eq!(recv.window(), 5096);
        recv.received(recv.available());
        recv.consumed(1, u32::MAX, 0);
        assert_eq!(recv.window(), 5096);
    }

    #[test]
    fn a_window_the_peer_does_not_use_up_stays() {
        let mut recv = RecvWindow::new(4096, 1 << 20);
        for _ in 0..100 {
            // Requests of 100 octets, answered before the next.
            recv.received(100);
            assert!(!recv.may_grow());
            recv.consumed(1, 100, u32::MAX);
        }
        assert_eq!(recv.window(), 4096);
    }

    #[test]
    fn a_window_the_application_sets_no_longer_grows() {
        let mut recv = RecvWindow::new(4096, 1 << 20);
        recv.resize(1, 8192, true);
        recv.received(recv.available());
        assert!(!recv.may_grow());
    }

    proptest::proptest! {
        #[test]
        fn receive_window_never_exceeds_configured_size(
            window in 4096u32..100_000, start: u32,
            steps in proptest::collection::vec((0u32..70_000, 0u32..70_000), 1..50),
        ) {
            let mut recv = RecvWindow { window, max: window, exhausted: false, next: start, consumed: start, advertised: start.wrapping_add(window) };
            for (got, used) in steps {
                let got = got.min(recv.available());
                recv.received(got);
                recv.consumed(0, used, 0);
                let held = recv.next.wrapping_sub(recv.consumed);
                proptest::prop_assert!(held <= window);
                proptest::prop_assert!(held as u64 + recv.available() as u64 <= window as u64);
            }
        }
    }
}
