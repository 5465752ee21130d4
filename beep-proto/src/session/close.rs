//! Closing channels and releasing the session (RFC 3080 2.3.1.3, 2.4):
//! the conditions under which our `<close>` and our `<ok/>` may go out,
//! and close in transit.

use super::{Session, channel_zero};
use crate::channel::{AfterSend, Channel, Outgoing};
use crate::error::UsageError;
use crate::event::Event;
use crate::frame::FrameType;
use crate::numbers::MsgNo;

use channel_zero::Request;

impl Session {
    pub(super) fn mark_closing(&mut self, channel: u32) {
        if !self.closing.contains(&channel) {
            self.closing.push(channel);
        }
    }

    /// The peer's close of `channel` is agreed; `<ok/>` follows when quiet.
    pub(super) fn close_accepted(&mut self, channel: u32, msgno: MsgNo) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            // Already closed (our own close crossed theirs): still, every
            // close request gets its answer.
            self.reply_zero(msgno, FrameType::Rpy, channel_zero::ok_body(), None);
            return;
        };
        // Our own close, if not yet sent, is superseded by theirs; one
        // already sent crossed it.
        ch.state.agree_close(msgno);
        self.mark_closing(channel);
        self.progress_closes();
    }

    /// Forgets a closed channel, with whatever output it still held (a
    /// SEQ due on it included: the peer forgets the channel too).
    pub(super) fn remove_channel(&mut self, channel: u32) -> Option<Channel> {
        let ch = self.channels.remove(&channel)?;
        self.sasl_channel_removed(channel);
        if let Some(seq) = ch.pending_seq {
            self.seqs_due.drop_seq(&seq);
        }
        let held: usize = ch
            .slots
            .iter()
            .flat_map(|s| &s.held)
            .map(Outgoing::remaining)
            .sum();
        let queued: usize = ch.queue.iter().map(Outgoing::remaining).sum();
        self.held = self.held.saturating_sub(held);
        self.queued = self.queued.saturating_sub(queued);
        self.queued_entries = self.queued_entries.saturating_sub(ch.queue.len());
        self.unanswered_total = self.unanswered_total.saturating_sub(ch.slots.len());
        let reassembling = self
            .reassembling
            .saturating_sub(ch.partial.len() + ch.partial_ans_len);
        self.set_reassembling(reassembling);
        self.note_room();
        Some(ch)
    }

    /// After we asked for, or agreed to, a session release, no new channel
    /// business may start (RFC 3080 2.3.1.3).
    pub(super) fn ensure_not_releasing(&self) -> Result<(), UsageError> {
        if self.release_under_way() {
            return Err(UsageError::ChannelClosing { channel: 0 });
        }
        Ok(())
    }

    /// Sends the `<close>` and `<ok/>` messages whose conditions now hold.
    pub(super) fn progress_closes(&mut self) {
        let mut i = 0;
        while i < self.closing.len() {
            let number = self.closing[i];
            if self.state.is_ended() {
                return;
            }
            let done = self.progress_close(number);
            if done {
                self.closing.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Returns true when `number` needs no more close work.
    pub(super) fn progress_close(&mut self, number: u32) -> bool {
        let quiet = if number == 0 {
            self.session_is_quiet()
        } else {
            self.channels.get(&number).is_some_and(Channel::is_quiet)
        };
        let Some(ch) = self.channels.get_mut(&number) else {
            return true;
        };
        if let Some(msgno) = ch.state.close_agreed() {
            if !quiet {
                return false;
            }
            ch.state.agreed_close_answered();
            if number == 0 {
                self.reply_zero(
                    msgno,
                    FrameType::Rpy,
                    channel_zero::ok_body(),
                    Some(AfterSend::Release),
                );
                self.release_ok_queued();
            } else {
                self.remove_channel(number);
                self.reply_zero(msgno, FrameType::Rpy, channel_zero::ok_body(), None);
                self.events
                    .push_back(Event::ChannelClosed { channel: number });
            }
            return true;
        }
        if !ch.state.close_wanted() {
            return true;
        }
        if !ch.may_request_close() {
            return false;
        }
        let Some((code, text)) = ch.state.close_sent() else {
            return true;
        };
        let body = channel_zero::close_body(number, code, self.diagnostic_lang(&text), &text);
        self.request(Request::Close { channel: number }, body);
        true
    }

    /// The session may be released: every channel quiet, and on channel 0
    /// nothing in flight but close requests themselves.
    pub(super) fn session_is_quiet(&self) -> bool {
        self.channels.values().all(|ch| {
            if ch.number != 0 {
                return ch.is_quiet();
            }
            ch.queue.is_empty()
                && ch.slots.len() <= 1
                && self
                    .requests
                    .iter()
                    .all(|r| matches!(r, Request::Close { channel: 0 }))
        })
    }
}
