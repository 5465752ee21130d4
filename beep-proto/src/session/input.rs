//! The receiving half: frame parsing, every poorly-formed-frame rule of
//! RFC 3080 2.2.1.1 decided at the header, reassembly and flow control.

use bytes::{Buf, Bytes, BytesMut};

use super::Session;
use crate::channel::{Channel, ReplySlot};
use crate::error::ProtocolError;
use crate::event::{Event, IncomingFrame, IncomingMessage, MessageKind, SessionEnd};
use crate::frame::{FrameHeader, FrameType, Header, SeqFrame, TRAILER, parse_header};
use crate::mime::Message;
use crate::numbers::MsgNo;
use crate::pieces::Pieces;

impl Session {
    /// Feeds bytes received from the peer.
    ///
    /// Any split of the stream gives the same result. On a protocol
    /// violation the session ends (RFC 3080 2.2.1.1: terminate without a
    /// word): close the connection. Events queued before the violation can
    /// still be polled.
    ///
    /// ```
    /// use beep_proto::{Session, ProtocolError, frame::FrameError};
    /// let mut s = Session::listener(Default::default());
    /// let err = s.handle_input(b"RPY\n").unwrap_err();
    /// assert_eq!(err, ProtocolError::Frame(FrameError::BareLineFeed));
    /// assert!(s.is_ended());
    /// ```
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if !self.state.takes_input() {
            // Whatever ended it, late bytes (a crossing <ok/>, a SEQ, the
            // rest of a bad frame) are moot; the end was reported once.
            // (After the end of the transport, nothing can arrive.)
            return Ok(());
        }
        if self.tls.layer.is_some() {
            return self.handle_tls_input(data);
        }
        self.handle_plain_input(data)?;
        // A <proceed/> may have switched the byte path mid-input.
        self.after_plain_input()
    }

    /// BEEP input, received plain or decrypted.
    pub(super) fn handle_plain_input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.inbuf.extend_from_slice(data);
        self.parse_buffered()
    }

    /// Parses what `inbuf` holds (plain input just appended, or
    /// plaintext TLS decrypted into it).
    pub(super) fn parse_buffered(&mut self) -> Result<(), ProtocolError> {
        let result = self.parse_frames();
        // Replies that arrived may let a waiting <close> or <ok/> go out.
        self.progress_closes();
        if let Err(e) = &result {
            self.end(SessionEnd::Violation(e.clone()));
        }
        if self.state.is_ended() {
            self.inbuf = BytesMut::new();
            self.reading = None;
        }
        result
    }

    /// Tells the session that the transport ended: the peer will send
    /// nothing more (a read returned 0, or the connection broke).
    ///
    /// Before a release this ends the session with
    /// [`SessionEnd::TransportClosed`], after everything already received
    /// (input buffered in the middle of a frame is dropped). Once our
    /// `<ok/>` to the peer's release is queued, the session ends as
    /// [`SessionEnd::Released`] (the `<ok/>` still goes out). While the
    /// peer's release awaits the application's answer (a peer may ask,
    /// then close its sending half) and nothing is awaited from the peer
    /// (a reply to one of our MSGs, the rest of one of its messages), the
    /// session waits for it:
    /// [`Session::accept_close`] ends it as released, [`Session::deny_close`]
    /// as `TransportClosed`. After the end it does nothing. Either way [`Event::SessionEnded`] is the last
    /// event; write what [`Session::poll_transmit`] still gives (the peer
    /// may have closed only its sending half), then close.
    ///
    /// ```
    /// use beep_proto::{Event, Session, SessionEnd};
    /// let mut s = Session::listener(Default::default());
    /// s.handle_eof();
    /// assert!(s.is_ended());
    /// assert_eq!(s.poll_event(), Some(Event::SessionEnded(SessionEnd::TransportClosed)));
    /// // The greeting is still there to send.
    /// assert!(s.poll_transmit().is_some());
    /// ```
    pub fn handle_eof(&mut self) {
        if self.state.is_ended() {
            return;
        }
        self.inbuf = BytesMut::new();
        self.reading = None;
        if self.eof_in_handshake() {
            return;
        }
        self.input_ended();
    }

    /// True if the session can become quiet with nothing more from the
    /// peer: no reply of the peer's is awaited (but to our own release,
    /// which theirs supersedes) and no message of the peer's is half
    /// received. Otherwise a release asked for before the end of input
    /// could never complete.
    pub(super) fn quiet_without_peer(&self) -> bool {
        self.channels
            .iter()
            .all(|(&n, ch)| ch.in_progress.is_none() && (n == 0 || ch.awaiting.is_empty()))
            && self
                .requests
                .iter()
                .all(|r| matches!(r, super::channel_zero::Request::Close { channel: 0 }))
    }

    fn parse_frames(&mut self) -> Result<(), ProtocolError> {
        while !self.state.is_ended() {
            let Some(header) = self.reading else {
                let Some((header, used)) = parse_header(&self.inbuf, self.config.max_header_len)?
                else {
                    return Ok(());
                };
                match header {
                    Header::Seq(seq) => {
                        self.inbuf.advance(used);
                        self.on_seq(seq)?;
                    }
                    Header::Frame(frame) => {
                        // Everything the header alone decides, before any
                        // payload is buffered.
                        self.check_frame(&frame)?;
                        self.inbuf.advance(used);
                        self.reading = Some(frame);
                    }
                }
                continue;
            };
            let size = header.size as usize;
            let have = self.inbuf.len();
            // Reject a wrong trailer as soon as its first bytes show it.
            if have > size {
                let seen = &self.inbuf[size..have.min(size + TRAILER.len())];
                if seen != &TRAILER[..seen.len()] {
                    return Err(ProtocolError::MissingTrailer {
                        channel: header.channel,
                    });
                }
            }
            if have < size + TRAILER.len() {
                return Ok(());
            }
            let payload = self.inbuf.split_to(size).freeze();
            self.inbuf.advance(TRAILER.len());
            self.reading = None;
            self.on_frame(header, payload)?;
            if self.events.len() > self.config.max_pending_events {
                return Err(ProtocolError::TooManyPendingEvents {
                    limit: self.config.max_pending_events,
                });
            }
        }
        Ok(())
    }

    fn on_seq(&mut self, seq: SeqFrame) -> Result<(), ProtocolError> {
        // A SEQ may cross our <ok/> for a channel being closed: ignore it.
        let Some(ch) = self.channels.get_mut(&seq.channel) else {
            return Ok(());
        };
        match ch.send.on_seq(seq.ackno, seq.window) {
            Ok(true) => self.schedule_channel(seq.channel),
            Ok(false) => {}
            Err(e) => {
                return Err(ProtocolError::AckBeyondSent {
                    channel: seq.channel,
                    ackno: seq.ackno,
                    sent: e.sent,
                });
            }
        }
        Ok(())
    }

    fn schedule_channel(&mut self, channel: u32) {
        if let Some(ch) = self.channels.get_mut(&channel)
            && !ch.scheduled
            && ch.can_send()
        {
            ch.scheduled = true;
            self.ready.push_back(channel);
        }
    }

    /// The poorly-formed-frame rules of RFC 3080 2.2.1.1 that the header
    /// decides (RFC 3080 2.2.1.1, RFC 3080 2.2.1, RFC 3080 2.3.1.1, RFC 3081 3.1.2).
    fn check_frame(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let channel = h.channel;
        if self.state.awaits_greeting()
            && (h.channel != 0
                || h.msgno != MsgNo(0)
                || !matches!(h.frame_type, FrameType::Rpy | FrameType::Err))
        {
            return Err(ProtocolError::GreetingExpected);
        }
        let ch = self
            .channels
            .get(&channel)
            .filter(|c| c.state.is_open())
            .ok_or(ProtocolError::ChannelNotOpen { channel })?;
        if h.seqno != ch.recv.expected() {
            return Err(ProtocolError::UnexpectedSeqno {
                channel,
                expected: ch.recv.expected(),
                got: h.seqno,
            });
        }
        let available = ch.recv.available();
        if h.size > available {
            return Err(ProtocolError::WindowExceeded {
                channel,
                size: h.size,
                available,
            });
        }
        if let Some((previous, previous_msgno)) = ch.in_progress {
            let continues = previous_msgno == h.msgno
                && (previous == h.frame_type
                    || (previous == FrameType::Ans && h.frame_type == FrameType::Ans));
            if !continues {
                return Err(ProtocolError::InterleavedFrame {
                    channel,
                    previous,
                    previous_msgno,
                    got: h.frame_type,
                    got_msgno: h.msgno,
                });
            }
        }
        match h.frame_type {
            FrameType::Msg => self.check_msg(ch, h)?,
            reply => check_reply(ch, h, reply)?,
        }
        let limit = self.config.max_answers_in_progress;
        let new_answer = h.frame_type == FrameType::Ans
            && h.more
            && !ch.partial_ans.iter().any(|(a, _)| *a == h.ansno);
        if new_answer && ch.partial_ans.len() >= limit {
            return Err(ProtocolError::TooManyAnswers { channel, limit });
        }
        self.check_size(ch, h)
    }

    fn check_msg(&self, ch: &Channel, h: &FrameHeader) -> Result<(), ProtocolError> {
        if ch.in_progress.is_some() {
            return Ok(()); // a continuation, checked above
        }
        let channel = ch.number;
        if ch.unanswered.contains(&h.msgno.0) {
            return Err(ProtocolError::MsgnoInUse {
                channel,
                msgno: h.msgno,
            });
        }
        // On channel 0 we answer by ourselves, so answers waiting for the
        // peer's window count too: junk requests cannot grow our output.
        let waiting = if channel == 0 {
            ch.slots.len() + ch.queue.len()
        } else {
            ch.slots.len()
        };
        if waiting >= self.config.max_pipelined {
            return Err(ProtocolError::TooManyPipelined {
                channel,
                limit: self.config.max_pipelined,
            });
        }
        // The per-channel bound times 1,024 channels is too much: MSGs
        // awaiting our reply on all channels together are bounded too.
        let limit = self.config.max_pipelined_total;
        if self.unanswered_total >= limit {
            return Err(ProtocolError::TooManyPipelinedTotal { limit });
        }
        Ok(())
    }

    /// A frame may not make a reassembled message exceed the limit.
    fn check_size(&self, ch: &Channel, h: &FrameHeader) -> Result<(), ProtocolError> {
        if ch.streaming && ch.number != 0 {
            return Ok(());
        }
        let greeting = ch.number == 0 && self.peer_greeting.is_none() && h.msgno == MsgNo(0);
        if greeting && h.frame_type != FrameType::Msg {
            let limit = self
                .config
                .max_greeting
                .min(self.config.max_channel0_message);
            if ch.partial.len() + h.size as usize > limit {
                return Err(ProtocolError::GreetingTooLarge { limit });
            }
        }
        let limit = if ch.number == 0 {
            self.config.max_channel0_message
        } else {
            self.config.max_message_size
        };
        // All answers in progress count together: a peer must not grow
        // memory by spreading one reply over ever more ansnos.
        let so_far = match h.frame_type {
            FrameType::Ans => ch.partial_ans_len,
            _ => ch.partial.len(),
        };
        if so_far + h.size as usize > limit {
            return Err(ProtocolError::MessageTooLarge {
                channel: ch.number,
                limit,
            });
        }
        // Each message is bounded above, and the windows bound what a
        // peer may send, but credit for unfinished messages goes back
        // while the application keeps up: without a session-wide bound, a
        // peer could start a partial message on every channel and make us
        // hold `max_message_size` for each. A frame that leaves its
        // message unfinished is held; check the total first.
        let budget = self.config.max_reassembly;
        if h.more && self.reassembling + h.size as usize > budget {
            return Err(ProtocolError::ReassemblyBudgetExceeded { limit: budget });
        }
        if h.more
            && let Some(shared) = &self.shared_reassembly
            && !shared.fits(h.size as usize)
        {
            return Err(ProtocolError::SharedReassemblyBudgetExceeded {
                limit: shared.limit(),
            });
        }
        Ok(())
    }

    /// Applies a complete, checked frame.
    fn on_frame(&mut self, h: FrameHeader, payload: Bytes) -> Result<(), ProtocolError> {
        let number = h.channel;
        // A request of the peer's while our answers pile up unsent: its
        // credit waits (see `max_queued_channel0`).
        let hold_zero_credit =
            number == 0 && h.frame_type == FrameType::Msg && self.channel_zero_backlogged();
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(ProtocolError::ChannelNotOpen { channel: number });
        };
        ch.recv.received(h.size);
        let tls_channel = ch.tls;
        let sasl_channel = self.sasl.owns(number);
        let kind = match h.frame_type {
            FrameType::Msg => MessageKind::Msg,
            FrameType::Rpy => MessageKind::Rpy,
            FrameType::Err => MessageKind::Err,
            FrameType::Ans => MessageKind::Ans { ansno: h.ansno },
            FrameType::Nul => MessageKind::Nul,
        };
        if h.frame_type == FrameType::Nul && !payload.is_empty() && payload[..] != b"\r\n"[..] {
            // LibVortex sends an empty MIME block in NUL; anything else is wrong.
            return Err(ProtocolError::InvalidNul {
                channel: number,
                msgno: h.msgno,
            });
        }
        // Bookkeeping shared by both delivery modes.
        if h.frame_type == FrameType::Msg {
            if ch.in_progress.is_none() {
                ch.unanswered.insert(h.msgno.0);
                self.unanswered_total += 1;
                ch.slots.push_back(ReplySlot {
                    msgno: h.msgno,
                    held: Default::default(),
                    started: None,
                    complete: false,
                    next_ansno: 0,
                });
            }
        } else {
            let first_reply = ch.awaiting.front().is_some_and(|a| a.reply.is_none());
            if first_reply {
                abandon_msg(ch, h.msgno, &mut self.queued);
            }
            if let Some(front) = ch.awaiting.front_mut() {
                front.reply = Some(h.frame_type);
            }
        }
        // A waiter takes this reply whole the moment it is complete.
        let awaited =
            h.frame_type != FrameType::Msg && ch.awaiting.front().is_some_and(|a| a.awaited);
        let reply_done = !h.more
            && matches!(
                h.frame_type,
                FrameType::Rpy | FrameType::Err | FrameType::Nul
            );
        if reply_done {
            ch.awaiting.pop_front();
        }

        if ch.streaming && number != 0 {
            track_ans(ch, &h);
            ch.in_progress = in_progress_after(ch, &h);
            ch.unconsumed += u64::from(h.size);
            self.events.push_back(Event::Frame(IncomingFrame {
                channel: number,
                msgno: h.msgno,
                kind,
                more: h.more,
                payload,
            }));
            return Ok(());
        }

        let held_before = ch.partial.len() + ch.partial_ans_len;
        let entity = if h.frame_type == FrameType::Ans {
            reassemble_ans(ch, &h, payload)
        } else if h.more {
            ch.partial.push(payload);
            None
        } else {
            Some(ch.partial.finish(payload))
        };
        // Session-wide, what unfinished messages hold (see `check_frame`).
        let reassembling =
            (self.reassembling + ch.partial.len() + ch.partial_ans_len).saturating_sub(held_before);
        if let Some(shared) = &self.shared_reassembly {
            shared.update(self.reassembling, reassembling);
        }
        self.reassembling = reassembling;
        ch.in_progress = in_progress_after(ch, &h);
        let Some(entity) = entity else {
            // Octets of an unfinished message are credited at once while
            // the application keeps up: the message-size limit bounds them,
            // and holding them would stall any message larger than the
            // window. Behind, the credit waits for the application, except
            // for a reply a waiter takes at once (its handler may be what
            // the application is behind on).
            if hold_zero_credit {
                ch.deferred_credit += h.size;
            } else if ch.unconsumed == 0 || number == 0 || awaited {
                self.return_window(number, h.size);
            } else {
                ch.deferred_credit += h.size;
            }
            return Ok(());
        };
        let credit = h.size + std::mem::take(&mut ch.deferred_credit);
        if number != 0 {
            ch.unconsumed += u64::from(credit);
        }
        let message = if h.frame_type == FrameType::Nul {
            Message::default()
        } else {
            Message::from_entity(entity)
        };
        if number == 0 {
            // The peer's requests make us answer: while our answers pile
            // up unsent (the peer grants no window for them), its window
            // for more requests stays closed, so a peer cannot make us
            // hold more than `max_queued_channel0` and one window's worth.
            if hold_zero_credit {
                self.defer_channel_zero_credit(credit);
            } else {
                self.return_window(0, credit);
            }
            return self.on_channel_zero(kind, h.msgno, message);
        }
        if tls_channel {
            return self.on_tls_message(number, kind, h.msgno, &message, credit);
        }
        if sasl_channel {
            return self.on_sasl_message(number, kind, h.msgno, &message, credit);
        }
        self.events.push_back(Event::Message(IncomingMessage {
            channel: number,
            msgno: h.msgno,
            kind,
            message,
            credit,
        }));
        Ok(())
    }
}

/// Checks a reply frame against our outstanding MSGs (RFC 3080 2.2.1.1, RFC 3080 2.1.1).
fn check_reply(ch: &Channel, h: &FrameHeader, reply: FrameType) -> Result<(), ProtocolError> {
    let channel = ch.number;
    let Some(front) = ch.awaiting.front() else {
        return Err(ProtocolError::UnsolicitedReply {
            channel,
            frame_type: reply,
            msgno: h.msgno,
        });
    };
    if front.msgno != h.msgno {
        return Err(if ch.awaiting.iter().any(|a| a.msgno == h.msgno) {
            ProtocolError::ReplyOutOfOrder {
                channel,
                msgno: h.msgno,
                expected: front.msgno,
            }
        } else {
            ProtocolError::UnsolicitedReply {
                channel,
                frame_type: reply,
                msgno: h.msgno,
            }
        });
    }
    if reply == FrameType::Nul && (h.more || h.size > 2) {
        return Err(ProtocolError::InvalidNul {
            channel,
            msgno: h.msgno,
        });
    }
    let fits = match (front.reply, reply) {
        (None, _) => true,
        (Some(FrameType::Ans), FrameType::Ans) => true,
        (Some(FrameType::Ans), FrameType::Nul) => ch.partial_ans.is_empty(),
        (Some(previous), got) => previous == got && ch.in_progress.is_some(),
    };
    if !fits {
        return Err(ProtocolError::MixedReply {
            channel,
            msgno: h.msgno,
            previous: front.reply.unwrap_or(reply),
            got: reply,
        });
    }
    Ok(())
}

/// The peer replied before the last frame of our MSG `msgno`: the rest is
/// not wanted. End the message with an empty final frame (RFC 3080 2.6.3).
fn abandon_msg(ch: &mut Channel, msgno: MsgNo, queued: &mut usize) {
    if let Some(out) = ch.queue.front_mut()
        && out.frame_type == FrameType::Msg
        && out.msgno == msgno
        && out.offset > 0
    {
        *queued = queued.saturating_sub(out.remaining());
        out.offset = out.len();
    }
}

/// Adds an ANS frame to its answer's buffer; returns the answer once complete.
fn reassemble_ans(ch: &mut Channel, h: &FrameHeader, payload: Bytes) -> Option<Bytes> {
    let index = ch.partial_ans.iter().position(|(a, _)| *a == h.ansno);
    match (index, h.more) {
        (None, false) => Some(payload),
        (None, true) => {
            ch.partial_ans_len += payload.len();
            let mut pieces = Pieces::default();
            pieces.push(payload);
            ch.partial_ans.push((h.ansno, pieces));
            None
        }
        (Some(i), true) => {
            ch.partial_ans_len += payload.len();
            ch.partial_ans[i].1.push(payload);
            None
        }
        (Some(i), false) => {
            let (_, mut pieces) = ch.partial_ans.swap_remove(i);
            ch.partial_ans_len -= pieces.len();
            Some(pieces.finish(payload))
        }
    }
}

/// In streaming mode, remembers which answers are unfinished.
fn track_ans(ch: &mut Channel, h: &FrameHeader) {
    if h.frame_type != FrameType::Ans {
        return;
    }
    let index = ch.partial_ans.iter().position(|(a, _)| *a == h.ansno);
    match (index, h.more) {
        (None, true) => ch.partial_ans.push((h.ansno, Pieces::default())),
        (Some(i), false) => {
            ch.partial_ans.swap_remove(i);
        }
        _ => {}
    }
}

/// The message left unfinished on the channel after frame `h`.
fn in_progress_after(ch: &Channel, h: &FrameHeader) -> Option<(FrameType, MsgNo)> {
    let unfinished = h.more || (h.frame_type == FrameType::Ans && !ch.partial_ans.is_empty());
    unfinished.then_some((h.frame_type, h.msgno))
}
