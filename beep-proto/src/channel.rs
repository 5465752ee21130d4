//! Per-channel state: message numbers in both directions, replies held
//! until their turn (RFC 3080 2.6.1), the outgoing queue, reassembly.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::flow::{RecvWindow, SendWindow};
use crate::frame::{FrameType, MAX_31BIT, SeqFrame};
use crate::idmap::IdSet;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::pieces::Pieces;
use crate::session::ChannelState;

/// Something to do once a message's last frame has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterSend {
    /// The start reply for this channel is out: it may now carry data.
    Activate(u32),
    /// Our `<ok/>` to a session release is out: the session is over.
    Release,
    /// Our `<ready/>` is out: we are silent until its answer (RFC 3080 3.1.3.1).
    ReadyWritten,
    /// Our `<proceed/>` is out: TLS begins (RFC 3080 3.1.3.2).
    Proceed,
}

/// A message (or the rest of one) waiting to be framed.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) frame_type: FrameType,
    pub(crate) msgno: MsgNo,
    pub(crate) ansno: AnsNo,
    /// Header block and body: framed as one payload without joining them.
    pub(crate) parts: [Bytes; 2],
    /// Octets already framed.
    pub(crate) offset: usize,
    pub(crate) after_send: Option<AfterSend>,
}

impl Outgoing {
    pub(crate) fn new(frame_type: FrameType, msgno: MsgNo, ansno: AnsNo, message: Message) -> Self {
        let parts = if frame_type == FrameType::Nul {
            // NUL frames are empty (RFC 3080 2.2.1.1), even though LibVortex
            // sends an empty header block.
            [Bytes::new(), Bytes::new()]
        } else {
            message.into_wire_parts()
        };
        Outgoing {
            frame_type,
            msgno,
            ansno,
            parts,
            offset: 0,
            after_send: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.parts[0].len() + self.parts[1].len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.len() - self.offset
    }

    /// Appends octets `offset .. offset + n` to `chunks` as slices of the
    /// parts (no copy) and moves past them.
    pub(crate) fn take_chunks(&mut self, n: usize, chunks: &mut Vec<Bytes>) {
        let end = self.offset + n;
        let mut base = 0;
        for part in &self.parts {
            let (from, to) = (self.offset.max(base), end.min(base + part.len()));
            if from < to {
                chunks.push(part.slice(from - base..to - base));
            }
            base += part.len();
        }
        self.offset = end;
    }

    /// Appends octets `offset .. offset + n` to `out` and moves past them.
    pub(crate) fn take_into(&mut self, n: usize, out: &mut BytesMut) {
        let end = self.offset + n;
        let mut base = 0;
        for part in &self.parts {
            let (from, to) = (self.offset.max(base), end.min(base + part.len()));
            if from < to {
                out.extend_from_slice(&part[from - base..to - base]);
            }
            base += part.len();
        }
        self.offset = end;
    }
}

/// A MSG received from the peer, awaiting our complete reply.
#[derive(Debug)]
pub(crate) struct ReplySlot {
    pub(crate) msgno: MsgNo,
    /// Reply messages produced before this slot's turn.
    pub(crate) held: VecDeque<Outgoing>,
    /// The kind of reply started: RPY/ERR (complete at once) or ANS.
    pub(crate) started: Option<FrameType>,
    /// The final reply (RPY, ERR or NUL) has been produced.
    pub(crate) complete: bool,
    pub(crate) next_ansno: u32,
}

/// One of our MSGs, awaiting the peer's reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Awaiting {
    pub(crate) msgno: MsgNo,
    /// Keyword of the reply frames received so far.
    pub(crate) reply: Option<FrameType>,
    /// A waiter takes the reply whole as soon as it is complete
    /// (`Session::set_reply_awaited`, set by the dispatch core's requests).
    pub(crate) awaited: bool,
}

/// What one queued message costs beyond its payload octets (its queue
/// entry, the message and its buffers' headers): counted in the output
/// limits, so many empty messages cannot hide behind their size.
pub(crate) const ENTRY_COST: usize = 128;

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) number: u32,
    pub(crate) profile: String,
    /// Runs the TLS profile: its messages are the session's business
    /// (`<ready/>`, `<proceed/>`), not the application's.
    pub(crate) tls: bool,
    /// Content the peer piggybacked on its reply to our start request.
    pub(crate) start_reply: Option<bytes::Bytes>,
    /// Where the channel stands: starting, open, closing (see
    /// [`ChannelState`] for its transitions).
    pub(crate) state: ChannelState,
    pub(crate) send: SendWindow,
    pub(crate) recv: RecvWindow,
    pub(crate) queue: VecDeque<Outgoing>,
    /// In the scheduler's ready list.
    pub(crate) scheduled: bool,
    pub(crate) next_msgno: u32,
    pub(crate) awaiting: VecDeque<Awaiting>,
    pub(crate) slots: VecDeque<ReplySlot>,
    /// The msgnos of `slots`, to detect reuse (RFC 3080 2.2.1.1) in O(1).
    pub(crate) unanswered: IdSet,
    /// The message whose last frame said `*` (RFC 3080 2.2.1.1).
    pub(crate) in_progress: Option<(FrameType, MsgNo)>,
    /// Reassembly of the MSG, RPY or ERR in progress.
    pub(crate) partial: Pieces,
    /// Reassembly of the ANS messages in progress, by ansno.
    pub(crate) partial_ans: Vec<(AnsNo, Pieces)>,
    /// Octets in `partial_ans`, all answers together.
    pub(crate) partial_ans_len: usize,
    /// Window credit of delivered messages the application has not given
    /// back yet.
    pub(crate) unconsumed: u64,
    /// Credit of unfinished messages, held back while the application is
    /// behind (`unconsumed > 0`): otherwise a peer could make us buffer
    /// message after message beyond the window.
    pub(crate) deferred_credit: u32,
    pub(crate) streaming: bool,
    /// The SEQ due on this channel, not yet written: only the newest is
    /// kept, since each advertises a window edge at or past the previous
    /// one's (RFC 3081 3.1.3). While set, the channel is on the session's
    /// list of channels with a SEQ due, and `Session::write_seqs` writes
    /// it.
    pub(crate) pending_seq: Option<SeqFrame>,
}

impl Channel {
    /// A channel whose receive window starts at `window` and may grow by
    /// itself up to `max` (see `RecvWindow::growth_wanted`).
    pub(crate) fn new(number: u32, window: u32, max: u32) -> Self {
        Channel {
            number,
            profile: String::new(),
            tls: false,
            start_reply: None,
            state: ChannelState::Starting,
            send: SendWindow::new(),
            recv: RecvWindow::new(window, max),
            queue: VecDeque::new(),
            scheduled: false,
            next_msgno: 0,
            awaiting: VecDeque::new(),
            slots: VecDeque::new(),
            unanswered: IdSet::default(),
            in_progress: None,
            partial: Pieces::default(),
            partial_ans: Vec::new(),
            partial_ans_len: 0,
            unconsumed: 0,
            deferred_credit: 0,
            streaming: false,
            pending_seq: None,
        }
    }

    /// Allocates the next msgno, wrapping after 2^31-1 (conformance item 23).
    /// Unique among outstanding ones as long as fewer than 2^31 are.
    pub(crate) fn allocate_msgno(&mut self) -> MsgNo {
        let msgno = self.next_msgno;
        self.next_msgno = if msgno == MAX_31BIT { 0 } else { msgno + 1 };
        MsgNo(msgno)
    }

    /// True if the next queued message can put a frame on the wire now.
    #[inline]
    pub(crate) fn can_send(&self) -> bool {
        self.state.may_send()
            && self
                .queue
                .front()
                .is_some_and(|m| m.remaining() == 0 || self.send.available() > 0)
    }

    /// What output queued or held for this channel and not yet framed
    /// costs: its octets, plus [`ENTRY_COST`] per message.
    pub(crate) fn unsent_octets(&self) -> usize {
        let held = self.slots.iter().flat_map(|s| &s.held);
        self.queue
            .iter()
            .chain(held)
            .map(|m| m.remaining() + ENTRY_COST)
            .sum()
    }

    /// True when nothing is in flight in either direction, the condition
    /// for accepting a close (RFC 3080 2.3.1.3, RFC 3080 2.3.1.3).
    pub(crate) fn is_quiet(&self) -> bool {
        self.queue.is_empty()
            && self.awaiting.is_empty()
            && self.slots.is_empty()
            && self.in_progress.is_none()
    }

    /// True when we may send our `<close>`: our MSGs are all out and each
    /// has at least its first reply frame (RFC 3080 2.3.1.3).
    pub(crate) fn may_request_close(&self) -> bool {
        self.awaiting.iter().all(|a| a.reply.is_some())
            && !self.queue.iter().any(|m| m.frame_type == FrameType::Msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_spans_header_block_and_body() {
        let mut out = Outgoing::new(FrameType::Msg, MsgNo(0), AnsNo(0), Message::new("abcdef"));
        assert_eq!(out.len(), 8);
        let mut buf = BytesMut::new();
        out.take_into(3, &mut buf);
        out.take_into(5, &mut buf);
        assert_eq!(&buf[..], b"\r\nabcdef");
        assert_eq!(out.remaining(), 0);
    }

    #[test]
    fn hardening_msgno_wraps_to_zero() {
        let mut ch = Channel::new(1, 4096, 4096);
        ch.next_msgno = MAX_31BIT;
        assert_eq!(ch.allocate_msgno(), MsgNo::MAX);
        assert_eq!(ch.allocate_msgno(), MsgNo(0));
    }

    #[test]
    fn nul_is_always_empty() {
        let out = Outgoing::new(FrameType::Nul, MsgNo(0), AnsNo(0), Message::new("ignored"));
        assert_eq!(out.len(), 0);
    }
}
