//! The sending half: reply ordering, framing within windows, and fair
//! round-robin scheduling across channels (RFC 3081 3.1.4, RFC 3081 3.1.4).

use bytes::Bytes;

use super::Session;
use super::feed::{self, FeedId, Front};
use super::lifecycle::SessionState;
use crate::channel::{AfterSend, Channel, Outgoing};
use crate::error::UsageError;
use crate::event::SessionEnd;
use crate::flow::seq_len;
use crate::frame::{FrameHeader, FrameType, MAX_31BIT, SeqFrame, TRAILER};
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};

/// Frame payloads from this size on are handed out as slices of the
/// application's buffers by [`Session::poll_transmit_vectored`]; smaller
/// ones (the default 4 KiB frames among them) are cheaper to copy than to
/// give write vector entries of their own, and a transport without real
/// vectored writes then still writes a batch at once.
const ZERO_COPY_MIN: usize = 8 << 10;

/// The channels with a SEQ due (`Channel::pending_seq`), in the order
/// they became due, and what those SEQs take on the wire. A SEQ is never
/// encoded where it is made: it waits here for [`Session::write_seqs`],
/// the one place SEQ frames leave, so that output can be held back as a
/// whole (RFC 3080 3.1.3.1: after `<ready/>`, nothing goes out).
///
/// Every number listed has a channel with a SEQ due, and no number is
/// listed twice: a newer SEQ replaces the older one on its channel, and a
/// channel removed takes its SEQ off the list.
#[derive(Debug, Default)]
pub(super) struct SeqsDue {
    channels: Vec<u32>,
    /// Octets of the SEQs due, counted in [`Session::queued_output`].
    octets: usize,
}

impl SeqsDue {
    /// Makes `seq` the SEQ due on `ch`, replacing an older one not yet
    /// written (`RecvWindow` moved its advertised edge, so the newer one
    /// says all the older did, RFC 3081 3.1.3). O(1).
    #[inline]
    pub(super) fn add(&mut self, ch: &mut Channel, seq: SeqFrame) {
        self.octets += seq_len(&seq);
        match ch.pending_seq.replace(seq) {
            Some(old) => self.octets -= seq_len(&old),
            None => self.channels.push(ch.number),
        }
    }

    /// Takes `seq`, the SEQ due on a channel being removed, off the list.
    pub(super) fn drop_seq(&mut self, seq: &SeqFrame) {
        self.octets -= seq_len(seq);
        self.channels.retain(|&n| n != seq.channel);
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    #[inline]
    pub(super) fn octets(&self) -> usize {
        self.octets
    }
}

impl Session {
    /// Bytes to write to the peer, in order, or `None` when there is
    /// nothing to send (or the peer's windows are full).
    ///
    /// Frames of different channels are interleaved one frame per channel
    /// per turn, so a bulk transfer cannot starve a small request.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// let greeting = s.poll_transmit().unwrap();
    /// assert!(greeting.ends_with(b"END\r\n"));
    /// assert!(s.poll_transmit().is_none());
    /// ```
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if !self.unwritten.is_empty() && !self.violated() {
            // What `write_to` could not write goes first.
            return Some(std::mem::take(&mut self.unwritten));
        }
        if self.tls.layer.is_some() {
            return self.transmit_tls();
        }
        let produced = self.transmit(None);
        if self.switched {
            // TLS began with this batch: what was framed up to
            // <proceed/> went to `unwritten`, plain; the rest waits.
            self.switched = false;
            return (!self.unwritten.is_empty()).then(|| std::mem::take(&mut self.unwritten));
        }
        if !produced {
            return None;
        }
        Some(self.out.split().freeze())
    }

    /// Like [`Session::poll_transmit`], without copying large payloads:
    /// appends to `chunks` the bytes to write, in order, where frame
    /// payloads of 8 KiB or more are slices of the application's own
    /// buffers (write them with one vectored write). Returns false when
    /// there is nothing to send.
    ///
    /// ```
    /// use beep_proto::{Config, Message, Session};
    /// let mut a = Session::initiator(Config::default());
    /// let mut chunks = Vec::new();
    /// assert!(a.poll_transmit_vectored(&mut chunks));
    /// let greeting: Vec<u8> = chunks.concat();
    /// assert!(greeting.starts_with(b"RPY 0 0 . 0 "));
    /// chunks.clear();
    /// assert!(!a.poll_transmit_vectored(&mut chunks) && chunks.is_empty());
    /// ```
    pub fn poll_transmit_vectored(&mut self, chunks: &mut Vec<Bytes>) -> bool {
        let before = chunks.len();
        if !self.unwritten.is_empty() && !self.violated() {
            chunks.push(std::mem::take(&mut self.unwritten));
        }
        if self.tls.layer.is_some() {
            // Encryption copies anyway: one chunk of ciphertext.
            if let Some(cipher) = self.transmit_tls() {
                chunks.push(cipher);
            }
        } else {
            let produced = self.transmit(Some(chunks));
            if self.switched {
                // As in `poll_transmit`: the plain rest, then TLS.
                self.switched = false;
                if !self.unwritten.is_empty() {
                    chunks.push(std::mem::take(&mut self.unwritten));
                }
            } else if produced && !self.out.is_empty() {
                chunks.push(self.out.split().freeze());
            }
        }
        chunks.len() > before
    }

    /// Frames what may go now into `out`, and with `chunks`, large payload
    /// pieces as chunks of their own (after flushing `out` into `chunks`,
    /// to keep the order). True if anything was produced.
    pub(super) fn transmit(&mut self, mut chunks: Option<&mut Vec<Bytes>>) -> bool {
        if self.violated() {
            // RFC 3080 2.2.1.1: a violation ends the session without a word.
            self.out.clear();
            self.unwritten.clear();
            return false;
        }
        if self.hold || self.switched {
            // Silent after our <ready/> (RFC 3080 3.1.3.1); after the
            // switch, until the next (encrypted) call.
            return !self.out.is_empty();
        }
        if !self.feeds.is_empty() {
            self.schedule_abandoned_feeds();
        }
        // A channel's SEQ goes before its messages (RFC 3081 3.1.4).
        self.write_seqs();
        let mut emitted = 0;
        loop {
            emitted = self.write_frames(chunks.as_deref_mut(), emitted);
            let before = self.ready.len();
            self.progress_closes();
            if self.ready.len() == before || emitted + self.out.len() >= self.config.transmit_batch
            {
                break;
            }
        }
        self.note_room();
        self.release_channel_zero_credit();
        // The channel-0 credit just given back goes out with this batch.
        if !(self.hold || self.switched) {
            self.write_seqs();
        }
        emitted > 0 || !self.out.is_empty()
    }

    /// Writes the SEQ frames due into `out`, in the order they became due:
    /// the one place SEQ frames leave the session. `out` is flushed into
    /// the chunks before any payload chunk, so they keep their place in a
    /// vectored write too.
    #[inline]
    pub(super) fn write_seqs(&mut self) {
        if self.seqs_due.is_empty() {
            return;
        }
        for number in self.seqs_due.channels.drain(..) {
            if let Some(seq) = self
                .channels
                .get_mut(&number)
                .and_then(|ch| ch.pending_seq.take())
            {
                seq.encode(&mut self.out);
            }
        }
        self.seqs_due.octets = 0;
    }

    /// True exactly when [`Session::poll_transmit`] (or
    /// [`Session::write_to`]) has bytes to give now: the write interest of
    /// an event loop. It becomes true only through a call on the session
    /// (input, a send, polling an event with automatic credit), so check it
    /// after each.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.wants_transmit());
    /// while s.poll_transmit().is_some() {}
    /// assert!(!s.wants_transmit());
    /// ```
    pub fn wants_transmit(&self) -> bool {
        if self.violated() {
            return false;
        }
        if !self.unwritten.is_empty() || !self.out.is_empty() || self.tls_wants_write() {
            return true;
        }
        if self.hold {
            return false;
        }
        !self.seqs_due.is_empty()
            || self
                .ready
                .iter()
                .any(|n| self.channels.get(n).is_some_and(|c| self.feeds.can_send(c)))
            || (!self.feeds.is_empty() && self.abandoned_feed_waits())
    }

    /// Writes what there is to send to `w` (a non-blocking socket, say)
    /// until everything is written or `w` would block; returns the octets
    /// written. A partial write is no loss: the rest is kept and goes
    /// first next time (and through `poll_transmit`, should the two be
    /// mixed). `WouldBlock` is returned only when nothing at all could be
    /// written; wait for the socket to be writable, then call again while
    /// [`Session::wants_transmit`] is true.
    ///
    /// ```
    /// use beep_proto::Session;
    /// let mut s = Session::initiator(Default::default());
    /// let mut wire = Vec::new();
    /// let n = s.write_to(&mut wire).unwrap();
    /// assert_eq!(n, wire.len());
    /// assert!(wire.starts_with(b"RPY 0 0 . 0 "));
    /// assert!(!s.wants_transmit());
    /// ```
    pub fn write_to(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        let mut written = 0;
        loop {
            if self.unwritten.is_empty() {
                match self.poll_transmit() {
                    Some(bytes) => self.unwritten = bytes,
                    None => return Ok(written),
                }
            }
            match w.write(&self.unwritten) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    bytes::Buf::advance(&mut self.unwritten, n);
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock && written > 0 => {
                    return Ok(written);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True once the peer broke a rule: nothing more is sent.
    fn violated(&self) -> bool {
        matches!(self.state, SessionState::Ended(SessionEnd::Violation(_)))
    }

    /// Puts `out` at the end of `channel`'s queue and schedules the channel.
    pub(super) fn enqueue(&mut self, channel: u32, out: Outgoing) {
        if let Some(ch) = self.channels.get_mut(&channel) {
            self.queued += out.remaining();
            self.queued_entries += 1;
            ch.queue.push_back(out);
            if !ch.scheduled && self.feeds.can_send(ch) {
                ch.scheduled = true;
                self.ready.push_back(channel);
            }
        }
    }

    #[inline]
    pub(super) fn schedule(&mut self, channel: u32) {
        if let Some(ch) = self.channels.get_mut(&channel)
            && !ch.scheduled
            && self.feeds.can_send(ch)
        {
            ch.scheduled = true;
            self.ready.push_back(channel);
        }
    }

    /// Queues a reply to the peer's MSG `msgno`, holding it back while
    /// earlier MSGs on the channel still await theirs (RFC 3080 2.6.1).
    pub(super) fn queue_reply(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        frame_type: FrameType,
        message: Message,
        after_send: Option<AfterSend>,
    ) -> Result<AnsNo, UsageError> {
        self.queue_reply_fed(channel, msgno, frame_type, message, after_send, false)
            .map(|(ansno, _)| ansno)
    }

    /// [`Session::queue_reply`], or (`fed`) the beginning of a reply fed
    /// in pieces, which completes its slot only once finished.
    #[inline(always)]
    pub(super) fn queue_reply_fed(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        frame_type: FrameType,
        message: Message,
        after_send: Option<AfterSend>,
        fed: bool,
    ) -> Result<(AnsNo, Option<FeedId>), UsageError> {
        // The application's replies are refused above the output limit
        // (after the checks that say the call is wrong anyway); a NUL only
        // completes a reply and must always be possible, and channel-0
        // answers are bounded by `max_queued_channel0` instead.
        let (queued, limit) = (self.queued_output(), self.config.max_queued_output);
        // The session's own answers on SASL channels are bounded by the
        // exchange instead (one per client message).
        let full = channel != 0
            && frame_type != FrameType::Nul
            && queued > limit
            && !self.is_sasl_channel(channel);
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or(UsageError::UnknownChannel { channel })?;
        let index = ch
            .slots
            .iter()
            .position(|s| s.msgno == msgno)
            .ok_or(UsageError::NoSuchRequest { channel, msgno })?;
        let slot = &mut ch.slots[index];
        let allowed = !slot.complete
            && matches!(
                (slot.started, frame_type),
                (None, _) | (Some(FrameType::Ans), FrameType::Ans | FrameType::Nul)
            );
        if !allowed {
            return Err(UsageError::ReplyMismatch {
                channel,
                msgno,
                frame_type,
            });
        }
        if full {
            self.output_blocked = true;
            return Err(UsageError::OutputFull { queued, limit });
        }
        let ansno = AnsNo(if frame_type == FrameType::Ans {
            slot.next_ansno
        } else {
            0
        });
        if fed && feed::entry_exists(ch, frame_type, msgno, ansno) {
            // Only a peer reusing a msgno before our reply to it is out
            // gets here: two entries must not look the same.
            return Err(UsageError::ReplyMismatch {
                channel,
                msgno,
                frame_type,
            });
        }
        let slot = &mut ch.slots[index];
        if frame_type == FrameType::Ans {
            slot.next_ansno = if ansno.0 == MAX_31BIT { 0 } else { ansno.0 + 1 };
        }
        slot.started = Some(frame_type);
        // A fed RPY completes its slot with its last piece.
        slot.complete = frame_type != FrameType::Ans && !fed;
        let mut out = Outgoing::new(frame_type, msgno, ansno, message);
        out.after_send = after_send;
        let feed = fed.then(|| {
            self.feeds
                .open(channel, frame_type, msgno, ansno, index != 0)
        });
        if index == 0 {
            self.queued += out.len();
            self.queued_entries += 1;
            ch.queue.push_back(out);
            let (mut released, entries, answered) = release_completed_slots(ch);
            if !self.feeds.is_empty() && entries > 0 {
                released += fed_released(ch, &mut self.feeds, entries);
            }
            self.held -= released;
            self.queued += released;
            self.queued_entries += entries;
            self.unanswered_total = self.unanswered_total.saturating_sub(answered);
        } else {
            self.held += out.len();
            slot.held.push_back(out);
        }
        self.schedule(channel);
        Ok((ansno, feed))
    }

    /// Moves the replies whose turn has come into `channel`'s send queue
    /// (RFC 3080 2.6.1).
    pub(super) fn release_slots(&mut self, channel: u32) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let (mut released, entries, answered) = release_completed_slots(ch);
        if !self.feeds.is_empty() && entries > 0 {
            released += fed_released(ch, &mut self.feeds, entries);
        }
        self.held -= released;
        self.queued += released;
        self.queued_entries += entries;
        self.unanswered_total = self.unanswered_total.saturating_sub(answered);
    }

    /// Frames queued messages, round robin, until `batch` octets are out
    /// (`emitted` of them already in `chunks`); returns the new `emitted`.
    fn write_frames(&mut self, mut chunks: Option<&mut Vec<Bytes>>, mut emitted: usize) -> usize {
        let batch = self.config.transmit_batch;
        let max_frame = self.config.max_frame_size as usize;
        while emitted + self.out.len() < batch && !(self.hold || self.switched) {
            let Some(number) = self.ready.pop_front() else {
                break;
            };
            let Some(ch) = self.channels.get_mut(&number) else {
                continue;
            };
            ch.scheduled = false;
            if !self.feeds.is_empty()
                && ch
                    .queue
                    .front()
                    .is_some_and(|m| self.feeds.is_fed(number, m))
            {
                // A message fed in pieces (rare): framed apart.
                emitted = self.write_fed_frame(number, chunks.as_deref_mut(), emitted);
                continue;
            }
            if !ch.can_send() {
                continue;
            }
            let Some(msg) = ch.queue.front_mut() else {
                continue;
            };
            let size = msg
                .remaining()
                .min(max_frame)
                .min(ch.send.available() as usize);
            let more = size < msg.remaining();
            let mut header = FrameHeader::new(
                msg.frame_type,
                number,
                msg.msgno,
                more,
                ch.send.next(),
                size as u32,
            );
            header.ansno = msg.ansno;
            header.encode(&mut self.out);
            match chunks.as_deref_mut() {
                Some(chunks) if size >= ZERO_COPY_MIN => {
                    emitted += self.out.len() + size;
                    chunks.push(self.out.split().freeze());
                    msg.take_chunks(size, chunks);
                }
                _ => msg.take_into(size, &mut self.out),
            }
            self.out.extend_from_slice(TRAILER);
            ch.send.sent(size as u32);
            self.queued -= size;
            let mut after_send = None;
            if !more {
                let sent = ch.queue.pop_front();
                self.queued_entries -= usize::from(sent.is_some());
                after_send = sent.and_then(|m| m.after_send);
            }
            if ch.can_send() {
                ch.scheduled = true;
                self.ready.push_back(number);
            }
            if let Some(action) = after_send {
                self.after_send(action);
            }
        }
        emitted
    }

    /// Frames the next piece of the fed message at the front of channel
    /// `number`'s queue, as [`Session::write_frames`] does for whole ones:
    /// what has been fed, within the window and the frame size, `*` until
    /// the last piece; nothing while all that was fed is out.
    #[cold]
    fn write_fed_frame(
        &mut self,
        number: u32,
        chunks: Option<&mut Vec<Bytes>>,
        mut emitted: usize,
    ) -> usize {
        let Some(ch) = self.channels.get_mut(&number) else {
            return emitted;
        };
        if !self.feeds.can_send(ch) {
            return emitted;
        }
        let Some(msg) = ch.queue.front_mut() else {
            return emitted;
        };
        let Some(f) = self.feeds.of(number, msg) else {
            return emitted;
        };
        let limit = (self.config.max_frame_size as usize).min(ch.send.available() as usize);
        let mut dropped = 0;
        let (size, more, f) = match feed::next_frame(f, &ch.awaiting, msg, limit, &mut dropped) {
            Front::Wait => return emitted,
            Front::Fed { size, more } => (size, more, Some(f)),
            // Answered by the peer: what is left of it goes, and an
            // empty last frame ends it.
            Front::Ended => {
                self.queued -= dropped;
                (0, false, None)
            }
        };
        let mut header = FrameHeader::new(
            msg.frame_type,
            number,
            msg.msgno,
            more,
            ch.send.next(),
            size as u32,
        );
        header.ansno = msg.ansno;
        header.encode(&mut self.out);
        let mut done = None;
        if let Some(f) = f {
            match chunks {
                Some(chunks) if size >= ZERO_COPY_MIN => {
                    emitted += self.out.len() + size;
                    chunks.push(self.out.split().freeze());
                    done = feed::take_fed(f, msg, size, |m, n| m.take_chunks(n, chunks));
                }
                _ => {
                    let out = &mut self.out;
                    done = feed::take_fed(f, msg, size, |m, n| m.take_into(n, out));
                }
            }
        }
        self.out.extend_from_slice(TRAILER);
        ch.send.sent(size as u32);
        self.queued -= size;
        let mut after_send = None;
        if !more {
            let sent = ch.queue.pop_front();
            self.queued_entries -= usize::from(sent.is_some());
            after_send = sent.and_then(|m| m.after_send);
            if let Some(id) = done {
                // Fed to its end and all out: an entry no more.
                self.feeds.remove(id);
            }
        }
        if self.feeds.can_send(ch) {
            ch.scheduled = true;
            self.ready.push_back(number);
        }
        if let Some(action) = after_send {
            self.after_send(action);
        }
        emitted
    }

    fn after_send(&mut self, action: AfterSend) {
        match action {
            AfterSend::Activate(number) => {
                if let Some(ch) = self.channels.get_mut(&number) {
                    ch.state.activated();
                    if let Some(seq) = ch.recv.initial_seq(number) {
                        self.seqs_due.add(ch, seq);
                    }
                }
                // Right behind the start reply, before any frame of the
                // channel (RFC 3081 3.1.4): this runs inside
                // `write_frames`, which may frame the channel next.
                self.write_seqs();
                self.schedule(number);
            }
            AfterSend::ReadyWritten => self.ready_written(),
            AfterSend::Proceed => self.proceed_written(),
            AfterSend::Release => {
                // The peer's <ok/> to our own release may have crossed ours
                // (RFC 3080 2.3.1.3): the session ends once.
                self.end(SessionEnd::Released);
            }
        }
    }
}

/// After [`release_completed_slots`] moved the last `entries` of the
/// queue: the pieces fed to them leave held output too.
#[cold]
fn fed_released(ch: &Channel, feeds: &mut feed::Feeds, entries: usize) -> usize {
    let start = ch.queue.len() - entries;
    feeds.released(ch.number, ch.queue.range(start..))
}

/// Moves the replies of slots whose turn has come into the send queue and
/// drops the slots whose reply is complete.
/// Returns the octets moved from held to queued.
fn release_completed_slots(ch: &mut Channel) -> (usize, usize, usize) {
    let (mut moved, mut entries, mut answered) = (0, 0, 0);
    while let Some(front) = ch.slots.front_mut() {
        moved += front.held.iter().map(Outgoing::len).sum::<usize>();
        entries += front.held.len();
        ch.queue.extend(front.held.drain(..));
        if !front.complete {
            break;
        }
        ch.unanswered.remove(&front.msgno.0);
        ch.slots.pop_front();
        answered += 1;
    }
    (moved, entries, answered)
}
