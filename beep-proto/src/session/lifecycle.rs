//! The lifecycles of a channel and of the session: one enum each, with
//! every transition written here (in the spirit of h11's state table), so
//! that a reader learns from this file which states exist, which events
//! move between them and what each state allows. The code that reacts to
//! an event (queueing a reply, reporting an event) stays where the event
//! is handled; it asks these methods for the move.

use super::Session;
use crate::event::{Event, SessionEnd};
use crate::numbers::MsgNo;

/// Where a channel stands (RFC 3080 2.3.1).
///
/// | state         | event                                                       | next            |
/// |---------------|-------------------------------------------------------------|-----------------|
/// | (none)        | we ask to start it (`open_channel`)                         | `Starting`      |
/// | (none)        | we accept the peer's `<start>` (`accept_start`)             | `Accepted(Idle)`|
/// | (none)        | channel 0, with the session                                 | `Open(Idle)`    |
/// | `Starting`    | the peer answers our `<start>` with `<profile>`             | `Open(Idle)`    |
/// | `Starting`    | the peer answers it with `<error>`                          | removed         |
/// | `Accepted(c)` | our `<profile>` reply is written (`AfterSend::Activate`)    | `Open(c)`       |
///
/// `Accepted` and `Open` carry where a close of the channel stands
/// ([`CloseState`]): a close may begin before our reply to the peer's
/// start is written (the application, or a pipelining peer, may close it
/// at once), and the channel still may not send until then.
///
/// What each state allows: `Starting` takes no frames in (the peer has
/// not started it) and none out, and is not open to the application;
/// `Accepted` takes frames in and queues output, but writes none (the
/// peer learns of the channel from our reply: a frame ahead of it would
/// be on a channel it does not know); `Open` both.
///
/// A peer's start request that the application has not answered yet is
/// no channel at all: it waits in `Session::pending_starts` and becomes
/// `Accepted` or nothing. A peer's close request that the application has
/// not answered yet waits in `Session::pending_closes` and leaves the
/// channel's [`CloseState`] as it is (`Idle`: had we wanted the channel
/// closed too, the request would have been agreed at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelState {
    /// Our start request awaits its reply.
    Starting,
    /// We accepted the peer's start request; our reply is not written
    /// yet, so the channel may not send.
    Accepted(CloseState),
    /// Running both ways.
    Open(CloseState),
}

/// Where a close of an open (or accepted) channel stands (RFC 3080
/// 2.3.1.3). Channel 0's is the release of the session.
///
/// | state            | event                                                          | next            |
/// |------------------|----------------------------------------------------------------|-----------------|
/// | `Idle`           | we ask to close it (`close_channel`)                           | `Wanted`        |
/// | `Wanted`         | our MSGs on it are out and each has a first reply: `<close>` queued | `Sent`     |
/// | `Idle`           | the peer asks (`<close>`)                                      | `Idle`, in `pending_closes` |
/// | `Idle`           | the application agrees (`accept_close`, or `close_channel`)    | `Agreed(msgno)` |
/// | `Wanted`         | the peer asks: both want it closed, agreed at once             | `Agreed(msgno)` (ours superseded) |
/// | `Sent`           | the peer asks: close in transit, agreed at once                | `Crossed(msgno)`|
/// | `Agreed`         | the channel is quiet: our `<ok/>` queued                       | removed; channel 0: `Idle` |
/// | `Crossed`        | the channel is quiet: our `<ok/>` queued                       | removed; channel 0: `Sent` |
/// | `Sent`, `Crossed`| the peer's `<ok/>` to ours                                     | removed (an agreed close of theirs gets its `<ok/>`); channel 0: the session ends |
/// | `Sent`           | the peer's `<error>` to ours ([`Event::CloseRefused`])         | `Idle`          |
/// | `Crossed`        | the peer's `<error>` to ours                                   | `Crossed` (it closes anyway) |
///
/// After we asked (`Wanted`, `Sent`, `Crossed`) no new MSG may be sent
/// on the channel; after we agreed to the peer's close alone (`Agreed`)
/// the application may still send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseState {
    /// No close under way.
    Idle,
    /// We want it closed: `<close>` waits for our MSGs to be flushed and
    /// acknowledged (RFC 3080 2.3.1.3).
    Wanted { code: u16, text: String },
    /// Our `<close>` is out; waiting for `<ok/>` or `<error>`.
    Sent,
    /// We agreed to the peer's close (its channel-0 MSG): `<ok/>` goes out
    /// once the channel is quiet.
    Agreed(MsgNo),
    /// Close in transit (RFC 3080 2.3.1.3): our `<close>` is out, and the
    /// peer's crossed it and was agreed at once; our `<ok/>` goes out once
    /// the channel is quiet, and the channel closes once.
    Crossed(MsgNo),
}

impl ChannelState {
    /// Channel 0, open from the start (RFC 3080 2.3.1).
    pub(crate) fn channel_zero() -> Self {
        ChannelState::Open(CloseState::Idle)
    }

    /// True unless our start request still awaits its reply: frames may
    /// come in, and the application sees the channel.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        !matches!(self, ChannelState::Starting)
    }

    /// True once the channel may write frames.
    #[inline]
    pub(crate) fn may_send(&self) -> bool {
        matches!(self, ChannelState::Open(_))
    }

    fn close(&self) -> Option<&CloseState> {
        match self {
            ChannelState::Starting => None,
            ChannelState::Accepted(close) | ChannelState::Open(close) => Some(close),
        }
    }

    fn close_mut(&mut self) -> Option<&mut CloseState> {
        match self {
            ChannelState::Starting => None,
            ChannelState::Accepted(close) | ChannelState::Open(close) => Some(close),
        }
    }

    /// True while a close of ours or an agreed one of the peer's is under
    /// way.
    pub(crate) fn is_closing(&self) -> bool {
        self.close().is_some_and(|c| *c != CloseState::Idle)
    }

    /// True after we asked to close it: no new MSG may go out on it.
    pub(crate) fn we_close(&self) -> bool {
        matches!(
            self.close(),
            Some(CloseState::Wanted { .. } | CloseState::Sent | CloseState::Crossed(_))
        )
    }

    /// The peer's close request we agreed to and have not answered yet.
    pub(crate) fn close_agreed(&self) -> Option<MsgNo> {
        match self.close() {
            Some(CloseState::Agreed(msgno) | CloseState::Crossed(msgno)) => Some(*msgno),
            _ => None,
        }
    }

    /// True while our close waits for its conditions.
    pub(crate) fn close_wanted(&self) -> bool {
        matches!(self.close(), Some(CloseState::Wanted { .. }))
    }

    /// We accepted the peer's start request: `Starting` (a new channel)
    /// becomes `Accepted`.
    pub(crate) fn accepted(&mut self) {
        if *self == ChannelState::Starting {
            *self = ChannelState::Accepted(CloseState::Idle);
        }
    }

    /// The peer answered our start request with a profile: `Starting`
    /// becomes `Open`.
    pub(crate) fn started(&mut self) {
        if *self == ChannelState::Starting {
            *self = ChannelState::Open(CloseState::Idle);
        }
    }

    /// Our reply to the peer's start request is written: `Accepted`
    /// becomes `Open`, its close state kept.
    pub(crate) fn activated(&mut self) {
        if let ChannelState::Accepted(close) = self {
            *self = ChannelState::Open(std::mem::replace(close, CloseState::Idle));
        }
    }

    /// We ask to close it: `Idle` becomes `Wanted`. False (nothing
    /// changes) when a close is already under way.
    pub(crate) fn want_close(&mut self, code: u16, text: String) -> bool {
        match self.close_mut() {
            Some(close @ CloseState::Idle) => {
                *close = CloseState::Wanted { code, text };
                true
            }
            _ => false,
        }
    }

    /// Our `<close>` goes out now: `Wanted` becomes `Sent`; returns the
    /// code and text it carries.
    pub(crate) fn close_sent(&mut self) -> Option<(u16, String)> {
        let close = self.close_mut()?;
        match std::mem::replace(close, CloseState::Sent) {
            CloseState::Wanted { code, text } => Some((code, text)),
            other => {
                *close = other;
                None
            }
        }
    }

    /// We agree to the peer's close request `msgno`: a close of ours not
    /// yet sent is superseded by theirs; one already sent crossed it.
    pub(crate) fn agree_close(&mut self, msgno: MsgNo) {
        if let Some(close) = self.close_mut() {
            *close = match close {
                CloseState::Sent | CloseState::Crossed(_) => CloseState::Crossed(msgno),
                _ => CloseState::Agreed(msgno),
            };
        }
    }

    /// Our `<ok/>` to the agreed close is queued: what remains is our own
    /// close, if it crossed theirs (for channel 0, which stays).
    pub(crate) fn agreed_close_answered(&mut self) {
        if let Some(close) = self.close_mut() {
            match close {
                CloseState::Agreed(_) => *close = CloseState::Idle,
                CloseState::Crossed(_) => *close = CloseState::Sent,
                _ => {}
            }
        }
    }

    /// The peer refused our close: the channel stays as it was before
    /// we asked. False (nothing changes) when we agreed to a close of
    /// theirs, which closes it anyway.
    pub(crate) fn close_refused(&mut self) -> bool {
        match self.close_mut() {
            Some(CloseState::Agreed(_) | CloseState::Crossed(_)) => false,
            Some(close) => {
                *close = CloseState::Idle;
                true
            }
            None => true,
        }
    }
}

/// Where the session stands (RFC 3080 2.4).
///
/// | state        | event                                                                 | next                     |
/// |--------------|-----------------------------------------------------------------------|--------------------------|
/// | (none)       | `initiator`, `listener`: our greeting queued                          | `Greeting`               |
/// | (none)       | `refusing`: our `<error>` queued instead                              | `Ended(Refused)`         |
/// | `Greeting`   | the peer's greeting                                                   | `Open`                   |
/// | `Greeting`   | the peer's `<error>` instead                                          | `Ended(Refused)`         |
/// | `Open`       | we agreed to the peer's release and the session is quiet: `<ok/>` queued | `Releasing`           |
/// | `Open`       | the peer's `<ok/>` to our own release                                 | `Ended(Released)`        |
/// | `Open`       | EOF while the peer's release awaits the application, nothing awaited from the peer | `InputEnded` |
/// | `InputEnded` | the application agrees and our `<ok/>` is queued                      | `Ended(Released)`        |
/// | `InputEnded` | the application refuses                                               | `Ended(TransportClosed)` |
/// | `Releasing`  | our `<ok/>` is written, the peer's `<ok/>` to ours arrives, or EOF    | `Ended(Released)`        |
/// | not `Ended`  | EOF (otherwise)                                                       | `Ended(TransportClosed)` |
/// | not `Ended`  | the peer breaks a rule (RFC 3080 2.2.1.1)                             | `Ended(Violation)`       |
///
/// The release negotiation itself is channel 0's close ([`CloseState`]
/// of channel 0): our release asked for (`Wanted`, `Sent`), theirs agreed
/// and waiting for quiet (`Agreed`, `Crossed`). Theirs awaiting the
/// application is `pending_closes[0]`. From our asking or agreeing on, no
/// channel may start (`Session::ensure_not_releasing`); from our agreeing
/// on (or `Releasing`), no MSG may be sent.
///
/// Tuning runs inside `Open` (RFC 3080 3 and 4.1: a tuning profile's
/// success closes every channel, channel 0 included, and both peers greet
/// again); its own states are `session/tuning.rs`'s `Tuning`, with their
/// table there:
///
/// * tuning requested (`ReadyQueued`, `ReadySent`, `ReadyReceived`):
///   `<ready/>` sent or received; its sender stays silent until it is
///   answered (RFC 3080 3.1.3.1), so nothing more is written, SEQ frames
///   included (they all leave through `Session::write_seqs`);
/// * tuning in progress (`Proceeding`, then the rustls handshake on the
///   byte path, what was read past `<proceed/>` included);
/// * reset: the session starts over (a fresh `Session` keeping only its
///   events, unwritten output, serverName and TLS layer), back to
///   `Greeting`.
///
/// SASL authentication (RFC 3080 4.1) runs inside `Open` as well, on a
/// channel of its own, with its states in `session/sasl.rs`; it never
/// resets the session (no security layer is negotiated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SessionState {
    /// Our greeting (RFC 3080 2.4) is queued; the peer's has not arrived:
    /// only it may come in (RFC 3080 2.2.1.1), and our channel-0 requests
    /// wait in `Session::deferred`.
    Greeting,
    /// Greetings exchanged: channels start and close.
    Open,
    // Tuning runs inside `Open` (see above and `session/tuning.rs`); its
    // reset starts over at `Greeting`.
    /// The transport ended while the peer's release awaited the
    /// application's answer ([`Session::handle_eof`]): nothing more comes
    /// in; the answer ends the session.
    InputEnded,
    /// We agreed to the peer's release and our `<ok/>` is queued (RFC 3080
    /// 2.3.1.3): input is still read (a crossing `<ok/>` to our own
    /// release), nothing new may start, and the session ends once the
    /// `<ok/>` is written.
    Releasing,
    /// Over, for this reason ([`Event::SessionEnded`] was queued once).
    Ended(SessionEnd),
}

impl SessionState {
    /// True once the session is over.
    #[inline]
    pub(super) fn is_ended(&self) -> bool {
        matches!(self, SessionState::Ended(_))
    }

    /// True while input from the peer is read.
    #[inline]
    pub(super) fn takes_input(&self) -> bool {
        matches!(
            self,
            SessionState::Greeting | SessionState::Open | SessionState::Releasing
        )
    }

    /// True until the peer's greeting has arrived.
    #[inline]
    pub(super) fn awaits_greeting(&self) -> bool {
        matches!(self, SessionState::Greeting)
    }
}

impl Session {
    /// The peer's greeting arrived: `Greeting` becomes `Open`.
    pub(super) fn greeted(&mut self) {
        if self.state == SessionState::Greeting {
            self.state = SessionState::Open;
        }
    }

    /// Our `<ok/>` to the peer's release is queued: the session is
    /// `Releasing`, or, the transport having ended already
    /// (`InputEnded`), over: nothing more will come, and the `<ok/>` still
    /// goes out.
    pub(super) fn release_ok_queued(&mut self) {
        match self.state {
            SessionState::InputEnded => self.end(SessionEnd::Released),
            SessionState::Ended(_) => {}
            _ => self.state = SessionState::Releasing,
        }
    }

    /// The application refused the peer's release: after the end of the
    /// transport (`InputEnded`) nothing can follow.
    pub(super) fn release_refused(&mut self) {
        if self.state == SessionState::InputEnded {
            self.end(SessionEnd::TransportClosed);
        }
    }

    /// The transport ended (see [`Session::handle_eof`]).
    pub(super) fn input_ended(&mut self) {
        match self.state {
            SessionState::Ended(_) => {}
            SessionState::Releasing => self.end(SessionEnd::Released),
            _ if self.pending_closes.contains_key(&0) && self.quiet_without_peer() => {
                self.state = SessionState::InputEnded;
            }
            _ => self.end(SessionEnd::TransportClosed),
        }
    }

    /// Ends the session once, queueing [`Event::SessionEnded`] as its last
    /// event.
    pub(super) fn end(&mut self, end: SessionEnd) {
        if !self.state.is_ended() {
            self.events.push_back(Event::SessionEnded(end.clone()));
            self.state = SessionState::Ended(end);
            if !self.feeds.is_empty() {
                self.drop_fed_pieces();
            }
        }
    }

    /// True once we asked for, or agreed to, a release of the session: no
    /// new channel business may start (RFC 3080 2.3.1.3).
    pub(super) fn release_under_way(&self) -> bool {
        self.state == SessionState::Releasing
            || self.channels.get(&0).is_some_and(|z| z.state.is_closing())
    }

    /// True once we agreed to a release of the session: nothing new goes
    /// out.
    pub(super) fn release_agreed(&self) -> bool {
        self.state == SessionState::Releasing
            || self
                .channels
                .get(&0)
                .is_some_and(|z| z.state.close_agreed().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_channel_may_send_once_its_reply_is_written() {
        let mut state = ChannelState::Starting;
        state.accepted();
        assert!(state.is_open() && !state.may_send());
        // A close may begin before the reply is written; it is kept.
        assert!(state.want_close(200, "bye".into()));
        state.activated();
        assert!(state.may_send() && state.close_wanted());
    }

    #[test]
    fn rfc3080_2_3_1_3_close_in_transit_is_crossed() {
        let mut state = ChannelState::channel_zero();
        assert!(state.want_close(200, String::new()));
        assert!(!state.want_close(200, String::new()), "already closing");
        assert_eq!(state.close_sent(), Some((200, String::new())));
        assert!(state.we_close() && state.close_agreed().is_none());
        state.agree_close(MsgNo(4));
        assert_eq!(state, ChannelState::Open(CloseState::Crossed(MsgNo(4))));
        // Their close closes it anyway: a refusal of ours changes nothing.
        assert!(!state.close_refused());
        state.agreed_close_answered();
        assert_eq!(state, ChannelState::Open(CloseState::Sent));
    }

    #[test]
    fn rfc3080_2_3_1_3_their_close_supersedes_ours_not_yet_sent() {
        let mut state = ChannelState::channel_zero();
        assert!(state.want_close(200, String::new()));
        state.agree_close(MsgNo(2));
        assert_eq!(state, ChannelState::Open(CloseState::Agreed(MsgNo(2))));
        assert!(state.is_closing() && !state.we_close());
        state.agreed_close_answered();
        assert_eq!(state, ChannelState::channel_zero());
    }

    #[test]
    fn rfc3080_2_3_1_3_a_refused_close_leaves_the_channel_open() {
        let mut state = ChannelState::channel_zero();
        assert!(state.want_close(550, "no".into()));
        assert!(state.close_sent().is_some());
        assert!(state.close_refused());
        assert_eq!(state, ChannelState::channel_zero());
    }
}
