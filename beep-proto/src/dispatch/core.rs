//! [`Core`]: a session plus the callers waiting on it, for drivers. It turns
//! session events into [`Outcome`]s: a waiter to wake with its result, or
//! work for application handlers. Each driver only decides how to wake a
//! waiter (a thread, a future) and where handlers run.

use std::collections::HashMap;

use thiserror::Error;

use super::{Reply, Requests};
use crate::error::{ProtocolError, UsageError};
use crate::event::{Event, IncomingFrame, IncomingMessage, MessageKind, SessionEnd, StartRequest};
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::session::{FeedId, Session};
use crate::xml::{ErrorElement, Profile};

/// Why a connection ended, reported once to every waiter and close handler.
///
/// ```
/// use beep_proto::dispatch::EndReason;
/// assert_eq!(EndReason::Released.to_string(), "released by agreement");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndReason {
    /// Both peers agreed to release the session (RFC 3080 2.4).
    #[error("released by agreement")]
    Released,
    /// The listener refused the session with this code and text.
    #[error("session refused: {code} {text}")]
    Refused {
        /// Reply code.
        code: ReplyCode,
        /// Diagnostic.
        text: String,
    },
    /// The peer closed the connection or it broke (EOF, reset, broken pipe).
    #[error("connection lost: {0}")]
    Lost(String),
    /// The peer violated the protocol.
    #[error("protocol violation: {0}")]
    Violation(ProtocolError),
    /// We shut it down without a release.
    #[error("shut down locally")]
    Shutdown,
    /// TLS failed (RFC 3080 3.1): see [`TlsError`](crate::tls::TlsError).
    #[error("TLS failed: {0}")]
    Tls(crate::tls::TlsError),
}

/// What a waiter was waiting for.
///
/// ```
/// use beep_proto::dispatch::Done;
/// assert_eq!(Done::Closed, Done::Closed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The channel we asked for is open with this profile.
    Opened {
        /// Channel number.
        channel: u32,
        /// The profile the peer chose, with its piggybacked reply.
        profile: Profile,
    },
    /// The complete reply to a request.
    Replied(Reply),
    /// The channel (0: the session) we asked to close is closed.
    Closed,
    /// TLS is active ([`Core::start_tls`]): the handshake is over.
    TlsActive(crate::tls::TlsInfo),
    /// We are authenticated ([`Core::start_sasl`]).
    Authenticated(crate::sasl::AuthInfo),
}

impl Done {
    /// The complete reply a request waited for; anything else (a bug: a
    /// request's waiter only ever gets its reply) ends the wait as a lost
    /// connection, never a panic.
    ///
    /// ```
    /// use beep_proto::dispatch::{Done, Reply};
    /// let reply = Reply::Rpy(beep_proto::Message::new("pong"));
    /// assert_eq!(Done::Replied(reply.clone()).into_reply().unwrap(), reply);
    /// assert!(Done::Closed.into_reply().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](super::Error::Closed) for anything but a reply.
    pub fn into_reply(self) -> Result<Reply, super::Error> {
        match self {
            Done::Replied(reply) => Ok(reply),
            other => Err(super::Error::Closed(EndReason::Lost(format!(
                "unexpected {other:?}"
            )))),
        }
    }

    /// What an authentication waiter waited for; anything else ends the
    /// wait as a lost connection, as [`Done::into_reply`] does.
    ///
    /// ```
    /// use beep_proto::dispatch::Done;
    /// assert!(Done::Closed.into_auth_info().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](super::Error::Closed) for anything but an
    /// authentication.
    pub fn into_auth_info(self) -> Result<crate::sasl::AuthInfo, super::Error> {
        match self {
            Done::Authenticated(info) => Ok(info),
            other => Err(super::Error::Closed(EndReason::Lost(format!(
                "unexpected {other:?}"
            )))),
        }
    }

    /// What a TLS waiter waited for; anything else ends the wait as a
    /// lost connection, as [`Done::into_reply`] does.
    ///
    /// ```
    /// use beep_proto::dispatch::Done;
    /// let info = beep_proto::tls::TlsInfo::default();
    /// assert_eq!(Done::TlsActive(info.clone()).into_tls_info().unwrap(), info);
    /// assert!(Done::Closed.into_tls_info().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](super::Error::Closed) for anything but TLS.
    pub fn into_tls_info(self) -> Result<crate::tls::TlsInfo, super::Error> {
        match self {
            Done::TlsActive(info) => Ok(info),
            other => Err(super::Error::Closed(EndReason::Lost(format!(
                "unexpected {other:?}"
            )))),
        }
    }
}

/// Why a waiter's wish was not granted.
///
/// ```
/// use beep_proto::dispatch::{Failure, EndReason};
/// let f = Failure::Ended(EndReason::Shutdown);
/// assert!(f.to_string().contains("shut down"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Failure {
    /// The peer said no (start, close).
    #[error("refused by the peer: {} {}", .0.code, .0.text)]
    Refused(ErrorElement),
    /// The channel closed before the reply came.
    #[error("the channel closed")]
    ChannelClosed,
    /// The answers to one request grew beyond the message-size limit
    /// without their NUL; later ones go to the channel's handler.
    #[error("the answers exceed {limit} octets")]
    ReplyTooLarge {
        /// The limit ([`Config::max_message_size`](crate::Config::max_message_size)).
        limit: usize,
    },
    /// The connection ended.
    #[error("the connection ended: {0}")]
    Ended(EndReason),
    /// A tuning profile (TLS) closed every channel (RFC 3080 3) before
    /// the answer came.
    #[error("every channel closed for a tuning reset (TLS began)")]
    TuningReset,
}

/// A start handler's answer.
///
/// ```
/// use beep_proto::dispatch::StartDecision;
/// let d = StartDecision::Accept(None);
/// assert!(matches!(d, StartDecision::Accept(None)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Start the channel, optionally piggybacking reply content.
    Accept(Option<bytes::Bytes>),
    /// Refuse, with a reply code and a diagnostic.
    Deny(ReplyCode, String),
}

/// The peer's request to close a channel (RFC 3080 2.3.1.3), as a close
/// handler sees it: the channel, and the reply code and diagnostic the
/// peer gave (`<close code='...'>text</close>`).
///
/// ```
/// use beep_proto::dispatch::CloseRequest;
/// use beep_proto::ReplyCode;
/// let request = CloseRequest { channel: 1, code: ReplyCode::SUCCESS, lang: None, text: "done".into() };
/// assert_eq!((request.channel, request.text.as_str()), (1, "done"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The channel, 0 for the whole session.
    pub channel: u32,
    /// The peer's reply code (200 for an ordinary close).
    pub code: ReplyCode,
    /// The language of `text` (`xml:lang`), if the peer named one.
    pub lang: Option<String>,
    /// The peer's diagnostic text, possibly empty.
    pub text: String,
}

impl CloseRequest {
    /// What the channel's close handler, if it has one, decides on this
    /// request: agree when it has none, and when it panics (a faulty
    /// handler neither keeps the channel open nor takes the connection
    /// down). Drivers answer with [`Core::answer_close`].
    ///
    /// ```
    /// use beep_proto::dispatch::{CloseDecision, CloseRequest};
    /// use beep_proto::ReplyCode;
    /// let request = CloseRequest { channel: 1, code: ReplyCode::SUCCESS, lang: None, text: String::new() };
    /// let none: Option<fn(&CloseRequest) -> CloseDecision> = None;
    /// assert_eq!(request.decide(none), CloseDecision::Accept);
    /// let busy = |_: &CloseRequest| CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "busy".into());
    /// assert!(matches!(request.decide(Some(busy)), CloseDecision::Deny(code, _) if code == ReplyCode::SERVICE_NOT_AVAILABLE));
    /// assert_eq!(request.decide(Some(|_: &CloseRequest| -> CloseDecision { panic!("bug") })), CloseDecision::Accept);
    /// ```
    pub fn decide(
        &self,
        handler: Option<impl FnOnce(&CloseRequest) -> CloseDecision>,
    ) -> CloseDecision {
        match handler {
            Some(handler) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(self)))
                    .unwrap_or(CloseDecision::Accept)
            }
            None => CloseDecision::Accept,
        }
    }
}

/// A close handler's answer to the peer's [`CloseRequest`]. A handler may
/// also return a `bool`: `true` agrees, `false` refuses with 550 "close
/// refused".
///
/// ```
/// use beep_proto::dispatch::CloseDecision;
/// use beep_proto::ReplyCode;
/// assert_eq!(CloseDecision::from(true), CloseDecision::Accept);
/// assert_eq!(
///     CloseDecision::from(false),
///     CloseDecision::Deny(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "close refused".into())
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseDecision {
    /// Agree: the channel closes once it is quiet.
    Accept,
    /// Refuse, with a reply code and a diagnostic; the channel stays open.
    Deny(ReplyCode, String),
}

impl From<bool> for CloseDecision {
    fn from(agree: bool) -> Self {
        if agree {
            CloseDecision::Accept
        } else {
            CloseDecision::Deny(
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "close refused".into(),
            )
        }
    }
}

/// What a driver's message handler did with an [`Outcome::Message`].
///
/// ```
/// use beep_proto::dispatch::Handled;
/// assert_ne!(Handled::Ran, Handled::Failed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// The handler ran to completion.
    Ran,
    /// The handler kept the message for the application to take later
    /// (an incoming-message queue): its credit goes back with
    /// [`Core::consumed`] when the application takes it, so the peer's
    /// window bounds what waits there.
    Kept,
    /// The handler returned an error (its text): an unanswered MSG gets
    /// an ERR carrying it; the channel stays open.
    Error(String),
    /// The channel has no handler.
    NoHandler,
    /// The handler panicked.
    Failed,
}

/// What a message handler may return: `()`, or a `Result` whose error
/// answers the MSG with an ERR carrying the error's text (so handlers can
/// use `?`).
///
/// ```
/// use beep_proto::dispatch::{Handled, HandlerResult};
/// assert_eq!(().into_handled(), Handled::Ran);
/// let failed: Result<(), String> = Err("no such user".into());
/// assert_eq!(failed.into_handled(), Handled::Error("no such user".into()));
/// ```
pub trait HandlerResult {
    /// What the driver reports to [`Core::message_handled`].
    fn into_handled(self) -> Handled;
}

impl HandlerResult for () {
    fn into_handled(self) -> Handled {
        Handled::Ran
    }
}

impl<E: std::fmt::Display> HandlerResult for Result<(), E> {
    fn into_handled(self) -> Handled {
        match self {
            Ok(()) => Handled::Ran,
            Err(e) => Handled::Error(e.to_string()),
        }
    }
}

/// What [`Core::message_handled`] needs of a message after the handler
/// took it.
///
/// ```
/// use beep_proto::dispatch::MessageDone;
/// use beep_proto::{IncomingMessage, Message, MessageKind, MsgNo};
/// let m = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Msg, message: Message::new("x"), credit: 3 };
/// assert_eq!(MessageDone::of(&m).credit, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageDone {
    /// Its channel.
    pub channel: u32,
    /// Its msgno.
    pub msgno: MsgNo,
    /// MSG or a reply.
    pub kind: MessageKind,
    /// The window credit it holds.
    pub credit: u32,
}

impl MessageDone {
    /// Remembers `m` before it is handed to the handler.
    pub fn of(m: &IncomingMessage) -> Self {
        MessageDone {
            channel: m.channel,
            msgno: m.msgno,
            kind: m.kind,
            credit: m.credit,
        }
    }

    /// Remembers frame `f` before it is handed to the frame handler: its
    /// payload is its credit.
    ///
    /// ```
    /// use beep_proto::dispatch::MessageDone;
    /// use beep_proto::{IncomingFrame, MessageKind, MsgNo};
    /// let f = IncomingFrame { channel: 1, msgno: MsgNo(4), kind: MessageKind::Msg, more: true, payload: "abc".into() };
    /// assert_eq!(MessageDone::of_frame(&f).credit, 3);
    /// ```
    pub fn of_frame(f: &IncomingFrame) -> Self {
        MessageDone {
            channel: f.channel,
            msgno: f.msgno,
            kind: f.kind,
            credit: u32::try_from(f.payload.len()).unwrap_or(u32::MAX),
        }
    }
}

/// A consequence of session events for the driver.
#[derive(Debug)]
pub enum Outcome<W> {
    /// Wake `W` with this result.
    Complete(W, Result<Done, Failure>),
    /// The peer asks to start a channel: consult the profile handlers.
    Start(StartRequest),
    /// A MSG, or a reply nobody waits for: for the channel's handler. Give
    /// its credit back with [`Core::consumed`] once handled.
    Message(IncomingMessage),
    /// A frame of a channel that delivers frames ([`Core::stream_frames`]):
    /// for its frame handler. Report with [`Core::message_handled`] and
    /// [`MessageDone::of_frame`] once handled.
    Frame(IncomingFrame),
    /// The peer asks to close a channel (0: the session), with its code
    /// and diagnostic.
    CloseRequested(CloseRequest),
    /// A channel closed (either side asked); forget its handlers.
    ChannelClosed(u32),
    /// The peer's SASL exchange needs the application (RFC 3080 4.1):
    /// ask the profiles' auth handler and answer with
    /// [`Core::answer_auth`].
    AuthRequested(crate::sasl::AuthRequest),
    /// The peer asks to begin TLS: ask the listener's
    /// [`TlsAcceptor`](super::TlsAcceptor) and answer with
    /// [`Core::answer_tls`].
    TlsRequested(crate::event::TlsRequest),
    /// TLS began (RFC 3080 3): every channel is gone, their handlers too.
    TuningReset,
    /// The TLS handshake is over (either side).
    TlsActive(crate::tls::TlsInfo),
    /// The connection ended; reported once.
    Ended(EndReason),
}

/// A session and its waiting callers.
///
/// ```
/// use beep_proto::dispatch::{Core, Outcome};
/// use beep_proto::{Config, Session};
/// let mut client: Core<&str> = Core::new(Session::initiator(Config::default()));
/// let mut server: Core<&str> = Core::new(Session::listener(Config { profiles: vec!["p".into()], ..Config::default() }));
/// let mut out = Vec::new();
/// let mut greeting = Vec::new();
/// server.poll_transmit_vectored(&mut greeting);
/// client.handle_input(&greeting.concat(), &mut out);
/// assert!(out.is_empty());
/// assert!(client.session().peer_greeting().is_some());
/// ```
#[derive(Debug)]
pub struct Core<W> {
    session: Session,
    requests: Requests<W>,
    opens: HashMap<u32, W>,
    closes: HashMap<u32, W>,
    /// Who waits for TLS ([`Core::start_tls`]).
    tls: Option<W>,
    /// TLS is active; its waiter gets it with the peer's new greeting.
    tls_done: Option<(W, crate::tls::TlsInfo)>,
    /// Who waits for our authentication ([`Core::start_sasl`]).
    auth: Option<W>,
    ended: Option<EndReason>,
}

impl<W> Core<W> {
    /// Wraps a fresh session.
    pub fn new(mut session: Session) -> Self {
        // Credit goes back when a waiter took a reply (here) or a handler
        // finished with a message (the driver): never twice.
        session.set_auto_credit(false);
        Core {
            session,
            requests: Requests::default(),
            opens: HashMap::new(),
            closes: HashMap::new(),
            tls: None,
            tls_done: None,
            auth: None,
            ended: None,
        }
    }

    /// The session, for reading its state.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for this crate's tests.
    #[cfg(test)]
    pub(crate) fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Asks the peer to begin TLS (see [`Session::start_tls`]); `waiter`
    /// gets [`Done::TlsActive`] once the handshake is over and the peer's
    /// new greeting has arrived over TLS (RFC 3080 3.1.3.2: the session
    /// starts over, so what the peer offers is known when the waiter
    /// wakes), or the refusal, or how the session ended.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// use beep_proto::tls::TlsClient;
    /// let mut core: Core<&str> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// let client = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    /// assert_eq!(core.start_tls(client, "tls"), Ok(1));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::start_tls`].
    pub fn start_tls(
        &mut self,
        client: crate::tls::TlsClient,
        waiter: W,
    ) -> Result<u32, UsageError> {
        let channel = self.session.start_tls(client)?;
        self.tls = Some(waiter);
        Ok(channel)
    }

    /// Authenticates us to the peer (see [`Session::start_sasl`]);
    /// `waiter` gets [`Done::Authenticated`], or the peer's refusal
    /// ([`Failure::Refused`], 535 for bad credentials), or how the
    /// session ended.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// use beep_proto::sasl::SaslClient;
    /// let mut core: Core<&str> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// assert_eq!(core.start_sasl(SaslClient::plain("bob", "secret"), "auth"), Ok(1));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::start_sasl`].
    pub fn start_sasl(
        &mut self,
        client: crate::sasl::SaslClient,
        waiter: W,
    ) -> Result<u32, UsageError> {
        let channel = self.session.start_sasl(client)?;
        self.auth = Some(waiter);
        Ok(channel)
    }

    /// Gives up our authentication on `channel` (see
    /// [`Session::abort_sasl`]): a driver whose caller stopped waiting
    /// does not leave the exchange pending. An exchange already over is
    /// left alone.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// core.abort_sasl(1); // no exchange: nothing happens
    /// ```
    pub fn abort_sasl(&mut self, channel: u32) {
        let _ = self.session.abort_sasl(channel);
    }

    /// Answers the peer's authentication request on `channel` (see
    /// [`Session::answer_auth`]); an answer that no longer fits (the
    /// exchange was aborted meanwhile) is dropped.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// use beep_proto::sasl::AuthAnswer;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// core.answer_auth(1, AuthAnswer::Deny); // nobody asked: nothing happens
    /// ```
    pub fn answer_auth(&mut self, channel: u32, answer: crate::sasl::AuthAnswer) {
        let _ = self.session.answer_auth(channel, answer);
    }

    /// Answers the peer's TLS request on `channel`: with `server`'s
    /// certificate, or (`None`) a refusal. A request that cannot be
    /// accepted yet (replies to the peer's messages are still owed, RFC
    /// 3080 3.1.3.1) is refused with 450.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// core.answer_tls(1, None); // nobody asked: nothing happens
    /// ```
    pub fn answer_tls(&mut self, channel: u32, server: Option<crate::tls::TlsServer>) {
        let refused = match server {
            Some(server) => match self.session.accept_tls(channel, &server) {
                Err(UsageError::TuningNotPossible { reason }) => {
                    Some((ReplyCode::ACTION_NOT_TAKEN, reason))
                }
                _ => None,
            },
            None => Some((ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "TLS refused")),
        };
        if let Some((code, text)) = refused {
            let _ = self.session.deny_tls(channel, code, text);
        }
    }

    /// Sends a MSG nobody waits for (see [`Session::send_msg`]; a request
    /// whose reply a caller awaits is [`Core::request`]). What it causes
    /// is routed by the next [`Core::route`], like everything below.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// // Channel 1 is not open.
    /// assert!(core.send_msg(1, beep_proto::Message::new("hi")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send_msg`].
    pub fn send_msg(&mut self, channel: u32, message: Message) -> Result<MsgNo, UsageError> {
        self.session.send_msg(channel, message)
    }

    /// Answers MSG `msgno` with a RPY (see [`Session::send_rpy`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.send_rpy(1, beep_proto::MsgNo(0), beep_proto::Message::new("no MSG 0 here")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send_rpy`].
    pub fn send_rpy(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        reply: Message,
    ) -> Result<(), UsageError> {
        self.session.send_rpy(channel, msgno, reply)
    }

    /// Answers MSG `msgno` with an ERR (see [`Session::send_err`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.send_err(1, beep_proto::MsgNo(0), beep_proto::Message::new("no MSG 0 here")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send_err`].
    pub fn send_err(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        error: Message,
    ) -> Result<(), UsageError> {
        self.session.send_err(channel, msgno, error)
    }

    /// Sends one ANS to MSG `msgno` (see [`Session::send_ans`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.send_ans(1, beep_proto::MsgNo(0), beep_proto::Message::new("no MSG 0 here")).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send_ans`].
    pub fn send_ans(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        answer: Message,
    ) -> Result<AnsNo, UsageError> {
        self.session.send_ans(channel, msgno, answer)
    }

    /// Ends the ANS series to MSG `msgno` (see [`Session::send_nul`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.send_nul(1, beep_proto::MsgNo(0)).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::send_nul`].
    pub fn send_nul(&mut self, channel: u32, msgno: MsgNo) -> Result<(), UsageError> {
        self.session.send_nul(channel, msgno)
    }

    /// Sets a channel's receive window (see
    /// [`Session::set_receive_window`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.set_receive_window(1, 1 << 20).is_err(), "channel 1 is not open");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::set_receive_window`].
    pub fn set_receive_window(&mut self, channel: u32, window: u32) -> Result<(), UsageError> {
        self.session.set_receive_window(channel, window)
    }

    /// Starts a MSG sent in pieces that nobody waits for (see
    /// [`Session::open_msg`]; its reply goes to the channel's handler).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(core.open_msg(1, beep_proto::Message::default()).is_err(), "channel 1 is not open");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::open_msg`].
    pub fn open_msg(&mut self, channel: u32, start: Message) -> Result<FeedId, UsageError> {
        self.session.open_msg(channel, start)
    }

    /// Starts a MSG sent in pieces whose reply `waiter` awaits, like
    /// [`Core::request`].
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(core.open_request(1, beep_proto::Message::default(), ()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Core::request`].
    pub fn open_request(
        &mut self,
        channel: u32,
        start: Message,
        waiter: W,
    ) -> Result<FeedId, UsageError> {
        if self.session.is_streaming(channel) {
            return Err(UsageError::Streaming { channel });
        }
        let feed = self.session.open_msg(channel, start)?;
        self.session.set_reply_awaited(channel, feed.msgno(), true);
        self.requests.insert(channel, feed.msgno(), waiter);
        Ok(feed)
    }

    /// Starts a RPY to MSG `msgno` sent in pieces (see
    /// [`Session::open_rpy`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.open_rpy(1, beep_proto::MsgNo(0), beep_proto::Message::default()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::open_rpy`].
    pub fn open_rpy(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        start: Message,
    ) -> Result<FeedId, UsageError> {
        self.session.open_rpy(channel, msgno, start)
    }

    /// Starts one ANS to MSG `msgno` sent in pieces (see
    /// [`Session::open_ans`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::listener(Default::default()));
    /// assert!(core.open_ans(1, beep_proto::MsgNo(0), beep_proto::Message::default()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::open_ans`].
    pub fn open_ans(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        start: Message,
    ) -> Result<FeedId, UsageError> {
        self.session.open_ans(channel, msgno, start)
    }

    /// Appends a piece to a message sent in pieces; `last` ends it (see
    /// [`Session::feed`]).
    ///
    /// ```
    /// use beep_proto::dispatch::{Core, Done, Outcome};
    /// use beep_proto::{Config, Event, IncomingMessage, Message, Session, xml::Profile};
    /// type Client = Core<&'static str>;
    /// // Moves bytes both ways; the server accepts starts and keeps MSGs.
    /// fn pump(client: &mut Client, server: &mut Session, out: &mut Vec<Outcome<&'static str>>, got: &mut Vec<IncomingMessage>) {
    ///     for _ in 0..4 {
    ///         let mut chunks = Vec::new();
    ///         client.poll_transmit_vectored(&mut chunks);
    ///         server.handle_input(&chunks.concat()).unwrap();
    ///         while let Some(event) = server.poll_event() {
    ///             match event {
    ///                 Event::StartRequested(start) => server.accept_start(start.channel, Profile::new("p")).unwrap(),
    ///                 Event::Message(m) => got.push(m),
    ///                 _ => {}
    ///             }
    ///         }
    ///         while let Some(bytes) = server.poll_transmit() {
    ///             client.handle_input(&bytes, out);
    ///         }
    ///     }
    /// }
    /// let mut client: Client = Core::new(Session::initiator(Config::default()));
    /// let mut server = Session::listener(Config { profiles: vec!["p".into()], ..Config::default() });
    /// let (mut out, mut got) = (Vec::new(), Vec::new());
    /// client.open_channel(Profile::new("p"), None, "open").unwrap();
    /// pump(&mut client, &mut server, &mut out, &mut got);
    /// assert!(matches!(out[0], Outcome::Complete("open", Ok(Done::Opened { channel: 1, .. }))));
    /// let feed = client.open_msg(1, Message::verbatim("")).unwrap();
    /// client.feed(feed, "in ".into(), false).unwrap();
    /// client.feed(feed, "pieces".into(), true).unwrap();
    /// pump(&mut client, &mut server, &mut out, &mut got);
    /// assert_eq!(&got[0].message.body()[..], b"in pieces");
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::feed`].
    pub fn feed(
        &mut self,
        feed: FeedId,
        piece: bytes::Bytes,
        last: bool,
    ) -> Result<(), UsageError> {
        self.session.feed(feed, piece, last)
    }

    /// Takes the output that is ready, as [`Session::poll_transmit_vectored`]
    /// does (payloads as they were given, not copied); true if it took any.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// let mut core: Core<()> = Core::new(beep_proto::Session::initiator(Default::default()));
    /// let mut chunks = Vec::new();
    /// assert!(core.poll_transmit_vectored(&mut chunks), "the greeting");
    /// assert!(!core.poll_transmit_vectored(&mut chunks));
    /// ```
    pub fn poll_transmit_vectored(&mut self, chunks: &mut Vec<bytes::Bytes>) -> bool {
        self.session.poll_transmit_vectored(chunks)
    }

    /// Why the connection ended, once it has.
    pub fn ended(&self) -> Option<&EndReason> {
        self.ended.as_ref()
    }

    /// Asks for a channel; `waiter` gets [`Done::Opened`] or the refusal.
    pub fn open_channel(
        &mut self,
        profile: Profile,
        server_name: Option<String>,
        waiter: W,
    ) -> Result<u32, UsageError> {
        self.start_channel(None, vec![profile], server_name, waiter)
    }

    /// Asks for a channel offering every profile of `profiles`, in order
    /// of preference (RFC 3080 2.3.1.2), as channel `number` (which must
    /// be of our parity and unused) or the next free one (`None`);
    /// `waiter` gets [`Done::Opened`] with the profile the peer chose, or
    /// the refusal. Returns the channel number.
    ///
    /// # Errors
    ///
    /// As [`Session::open_channel_number`]: a refused number is
    /// [`UsageError::ChannelNumberUnavailable`], and nothing is sent.
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// use beep_proto::{Session, UsageError, xml::Profile};
    /// let mut core: Core<&str> = Core::new(Session::initiator(Default::default()));
    /// let offer = vec![Profile::new("http://example.org/a"), Profile::new("http://example.org/b")];
    /// assert_eq!(core.start_channel(Some(5), offer.clone(), None, "five"), Ok(5));
    /// assert_eq!(
    ///     core.start_channel(Some(5), offer.clone(), None, "again"),
    ///     Err(UsageError::ChannelNumberUnavailable { channel: 5 })
    /// );
    /// assert_eq!(core.start_channel(None, offer, None, "next"), Ok(1));
    /// ```
    pub fn start_channel(
        &mut self,
        number: Option<u32>,
        profiles: Vec<Profile>,
        server_name: Option<String>,
        waiter: W,
    ) -> Result<u32, UsageError> {
        let number = match number {
            Some(number) => self
                .session
                .open_channel_number(number, profiles, server_name)?,
            None => self.session.open_channel(profiles, server_name)?,
        };
        self.opens.insert(number, waiter);
        Ok(number)
    }

    /// Sends a MSG; `waiter` gets the complete reply.
    pub fn request(
        &mut self,
        channel: u32,
        message: Message,
        waiter: W,
    ) -> Result<MsgNo, UsageError> {
        if self.session.is_streaming(channel) {
            return Err(UsageError::Streaming { channel });
        }
        let msgno = self.session.send_msg(channel, message)?;
        self.session.set_reply_awaited(channel, msgno, true);
        self.requests.insert(channel, msgno, waiter);
        Ok(msgno)
    }

    /// From now on `channel` delivers each frame as [`Outcome::Frame`]
    /// instead of whole messages (for messages larger than memory should
    /// hold). Refused while a request on it waits for a whole reply, or a
    /// message is half received.
    pub fn stream_frames(&mut self, channel: u32) -> Result<(), UsageError> {
        if self.requests.has_channel(channel) {
            return Err(UsageError::RequestsPending { channel });
        }
        self.session.set_streaming(channel, true)
    }

    /// Forgets the waiter of a request (it gave up); a late reply goes to
    /// the channel's handler.
    pub fn cancel_request(&mut self, channel: u32, msgno: MsgNo) -> Option<W> {
        self.session.set_reply_awaited(channel, msgno, false);
        self.requests.remove(channel, msgno)
    }

    /// Asks to close `channel` (0: release the session); `waiter` gets
    /// [`Done::Closed`] or the refusal.
    pub fn close(&mut self, channel: u32, waiter: W) -> Result<(), UsageError> {
        self.close_with(channel, ReplyCode::SUCCESS, "", waiter)
    }

    /// Like [`Core::close`], with the reply code and diagnostic the peer's
    /// close handler sees ([`CloseRequest`]).
    ///
    /// ```
    /// use beep_proto::dispatch::Core;
    /// use beep_proto::{Config, ReplyCode, Session, UsageError};
    /// let mut core: Core<()> = Core::new(Session::initiator(Config::default()));
    /// // Channel 1 is not open: refused, and nobody waits.
    /// let refused = core.close_with(1, ReplyCode::SERVICE_NOT_AVAILABLE, "going away", ());
    /// assert!(matches!(refused, Err(UsageError::UnknownChannel { channel: 1 })));
    /// ```
    pub fn close_with(
        &mut self,
        channel: u32,
        code: ReplyCode,
        text: &str,
        waiter: W,
    ) -> Result<(), UsageError> {
        if channel == 0 {
            self.session.close_session(code, text)?;
        } else {
            self.session.close_channel(channel, code, text)?;
        }
        self.closes.insert(channel, waiter);
        Ok(())
    }

    /// Answers a start request: `chosen` is the offered profile we serve
    /// and its handler's decision, or, when we serve none of the offered
    /// profiles, the reply code and diagnostic of the refusal (see
    /// [`Profiles::decide_start`](super::Profiles::decide_start)). With `frames`, an accepted channel delivers frames
    /// ([`Core::stream_frames`]) from the start: before the peer, which has
    /// not seen our `<ok/>` yet, can send anything. Returns true if the
    /// channel is now open.
    pub fn answer_start(
        &mut self,
        request: &StartRequest,
        chosen: Result<(&Profile, StartDecision), (ReplyCode, String)>,
        frames: bool,
    ) -> Result<bool, UsageError> {
        let channel = request.channel;
        match chosen {
            Err((code, text)) | Ok((_, StartDecision::Deny(code, text))) => {
                self.session.deny_start(channel, code, &text)?;
                Ok(false)
            }
            Ok((offer, StartDecision::Accept(content))) => {
                let mut reply = Profile::new(offer.uri.clone());
                if let Some(content) = content {
                    reply = reply.with_content(content);
                }
                self.session.accept_start(channel, reply)?;
                if frames {
                    self.stream_frames(channel)?;
                }
                Ok(true)
            }
        }
    }

    /// A message given to the application as [`Outcome::Message`] has been
    /// dealt with: its window credit goes back, and depending on
    /// `handled`: nothing more; a MSG nobody could handle gets an ERR; a
    /// failed (panicked) handler's unanswered MSG gets an ERR and the
    /// channel closes, while the connection and its other channels go on.
    pub fn message_handled(&mut self, message: &MessageDone, handled: Handled) {
        let MessageDone {
            channel,
            msgno,
            kind,
            credit,
        } = *message;
        if handled == Handled::Kept {
            return;
        }
        self.session.consumed(channel, credit);
        let text = match &handled {
            Handled::Ran | Handled::Kept => return,
            Handled::Error(text) => text.as_str(),
            Handled::NoHandler => "no handler for this channel",
            Handled::Failed => "the handler failed",
        };
        if kind == MessageKind::Msg {
            // Fails harmlessly if the handler replied before failing.
            let _ = self
                .session
                .send_err(channel, msgno, Message::new(text.to_owned()));
        }
        if handled == Handled::Failed {
            let _ =
                self.session
                    .close_channel(channel, ReplyCode::ACTION_ABORTED, "handler failed");
        }
    }

    /// Answers the peer's request to close `channel` (0: the session) with
    /// a close handler's decision (`true`/`false` convert: see
    /// [`CloseDecision`]).
    ///
    /// ```
    /// use beep_proto::dispatch::{CloseDecision, Core};
    /// use beep_proto::{Config, ReplyCode, Session, UsageError};
    /// let mut core: Core<()> = Core::new(Session::listener(Config::default()));
    /// // No close request waits for an answer: refused.
    /// let busy = CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "busy".into());
    /// assert_eq!(core.answer_close(1, busy), Err(UsageError::NoPendingClose { channel: 1 }));
    /// assert!(core.answer_close(1, true).is_err());
    /// ```
    pub fn answer_close(
        &mut self,
        channel: u32,
        decision: impl Into<CloseDecision>,
    ) -> Result<(), UsageError> {
        match decision.into() {
            CloseDecision::Accept => self.session.accept_close(channel),
            CloseDecision::Deny(code, text) => self.session.deny_close(channel, code, &text),
        }
    }

    /// Gives back window for a message the application has finished with
    /// (one a handler reported as [`Handled::Kept`]).
    pub fn consumed(&mut self, channel: u32, credit: u32) {
        self.session.consumed(channel, credit);
    }

    /// Feeds bytes from the peer and routes what they caused; a violation
    /// ends the connection.
    pub fn handle_input(&mut self, bytes: &[u8], out: &mut Vec<Outcome<W>>) {
        if self.ended.is_some() {
            return;
        }
        // A violation also arrives as Event::SessionEnded, routed here.
        let _ = self.session.handle_input(bytes);
        self.route(out);
    }

    /// The transport ended (the peer closed it, or it broke): the session
    /// ends as [`Session::handle_eof`] says, and what it caused is routed.
    pub fn handle_eof(&mut self, out: &mut Vec<Outcome<W>>) {
        self.session.handle_eof();
        self.route(out);
    }

    /// Turns pending session events into outcomes. Call after every
    /// session call (including `poll_transmit`, which can end a session).
    pub fn route(&mut self, out: &mut Vec<Outcome<W>>) {
        while let Some(event) = self.session.poll_event() {
            self.route_event(event, out);
        }
    }

    fn route_event(&mut self, event: Event, out: &mut Vec<Outcome<W>>) {
        match event {
            Event::StartRequested(request) => out.push(Outcome::Start(request)),
            Event::ChannelOpened { channel, profile } => {
                if let Some(w) = self.opens.remove(&channel) {
                    out.push(Outcome::Complete(w, Ok(Done::Opened { channel, profile })));
                }
            }
            Event::ChannelRefused { channel, error } => {
                if let Some(w) = self.opens.remove(&channel) {
                    out.push(Outcome::Complete(w, Err(Failure::Refused(error))));
                }
            }
            Event::Message(m) => {
                let (channel, msgno, credit) = (m.channel, m.msgno, m.credit);
                match self.requests.on_reply(m) {
                    // Taken by a waiter (or collected until NUL): the
                    // window is free at once.
                    Ok(done) => {
                        self.session.consumed(channel, credit);
                        if let Some((w, reply)) = done {
                            out.push(Outcome::Complete(w, Ok(Done::Replied(reply))));
                        } else {
                            self.limit_answers(channel, msgno, out);
                        }
                    }
                    Err(m) => out.push(Outcome::Message(m)),
                }
            }
            Event::Frame(f) => out.push(Outcome::Frame(f)),
            Event::CloseRequested {
                channel,
                code,
                lang,
                text,
            } => out.push(Outcome::CloseRequested(CloseRequest {
                channel,
                code,
                lang,
                text,
            })),
            Event::ChannelClosed { channel } => {
                for w in self.requests.remove_channel(channel) {
                    out.push(Outcome::Complete(w, Err(Failure::ChannelClosed)));
                }
                if let Some(w) = self.closes.remove(&channel) {
                    out.push(Outcome::Complete(w, Ok(Done::Closed)));
                }
                out.push(Outcome::ChannelClosed(channel));
            }
            Event::CloseRefused { channel, error } => {
                if let Some(w) = self.closes.remove(&channel) {
                    out.push(Outcome::Complete(w, Err(Failure::Refused(error))));
                }
            }
            Event::SessionEnded(end) => {
                let reason = match end {
                    SessionEnd::Released => EndReason::Released,
                    SessionEnd::Refused(error) => EndReason::Refused {
                        code: error.code,
                        text: error.text,
                    },
                    SessionEnd::Violation(e) => EndReason::Violation(e),
                    SessionEnd::TransportClosed => {
                        EndReason::Lost("the peer closed the connection".into())
                    }
                    SessionEnd::TlsFailed(e) => EndReason::Tls(e),
                };
                self.end(reason, out);
            }
            // Drivers read the greeting from the session when they need
            // it; a TLS waiter was waiting for the one after the handshake.
            Event::Greeting(_) => {
                if let Some((w, info)) = self.tls_done.take() {
                    out.push(Outcome::Complete(w, Ok(Done::TlsActive(info))));
                }
            }
            Event::TlsRequested(request) => out.push(Outcome::TlsRequested(request)),
            Event::TlsRefused { error, .. } => {
                if let Some(w) = self.tls.take() {
                    out.push(Outcome::Complete(w, Err(Failure::Refused(error))));
                }
            }
            Event::TlsActive(info) => {
                if let Some(w) = self.tls.take() {
                    // The peer's greeting travels right behind its
                    // handshake: the waiter wakes with both.
                    self.tls_done = Some((w, info.clone()));
                }
                out.push(Outcome::TlsActive(info));
            }
            // Every channel is gone: whoever waited on one learns why.
            Event::TuningReset => {
                for w in self.requests.drain() {
                    out.push(Outcome::Complete(w, Err(Failure::TuningReset)));
                }
                for (_, w) in self.opens.drain().chain(self.closes.drain()) {
                    out.push(Outcome::Complete(w, Err(Failure::TuningReset)));
                }
                out.push(Outcome::TuningReset);
            }
            // Drivers bound their output by waiting for room before they
            // send, and turn the session's own limit off.
            Event::Writable => {}
            Event::AuthRequested(request) => out.push(Outcome::AuthRequested(request)),
            Event::Authenticated(info) => {
                if let Some(w) = self.auth.take() {
                    out.push(Outcome::Complete(w, Ok(Done::Authenticated(info))));
                }
            }
            Event::AuthFailed { error, .. } => {
                if let Some(w) = self.auth.take() {
                    out.push(Outcome::Complete(w, Err(Failure::Refused(error))));
                }
            }
        }
    }

    /// Answers collected for a waiter are bounded like any message.
    fn limit_answers(&mut self, channel: u32, msgno: MsgNo, out: &mut Vec<Outcome<W>>) {
        let limit = self.session.config().max_message_size;
        if self.requests.collected(channel, msgno) > limit
            && let Some(w) = self.requests.remove(channel, msgno)
        {
            out.push(Outcome::Complete(w, Err(Failure::ReplyTooLarge { limit })));
        }
    }

    /// Ends the connection once: every waiter fails with the reason (our
    /// own release succeeds), then [`Outcome::Ended`].
    pub fn end(&mut self, reason: EndReason, out: &mut Vec<Outcome<W>>) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(reason.clone());
        let failure = || Err(Failure::Ended(reason.clone()));
        for w in self.requests.drain() {
            out.push(Outcome::Complete(w, failure()));
        }
        for (_, w) in self.opens.drain() {
            out.push(Outcome::Complete(w, failure()));
        }
        let tls = self.tls.take().into_iter().chain(self.auth.take());
        for w in tls.chain(self.tls_done.take().map(|(w, _)| w)) {
            out.push(Outcome::Complete(w, failure()));
        }
        for (channel, w) in self.closes.drain() {
            let released = channel == 0 && reason == EndReason::Released;
            let result = if released {
                Ok(Done::Closed)
            } else {
                failure()
            };
            out.push(Outcome::Complete(w, result));
        }
        out.push(Outcome::Ended(reason));
    }

    /// `Ok` if a non-blocking send may go ahead: the connection lives and
    /// no more than `limit` octets of output are unsent; else
    /// [`Error::QueueFull`](super::Error::QueueFull) or why it ended
    /// (the way in is [`Room::check`](super::Room::check)).
    pub(crate) fn check_room(&self, limit: usize) -> Result<(), super::Error> {
        self.live()?;
        let queued = self.session.queued_output();
        if queued > limit {
            return Err(super::Error::QueueFull { queued, limit });
        }
        Ok(())
    }

    /// `Ok` while the connection lives, else why it ended.
    pub fn live(&self) -> Result<(), Failure> {
        match &self.ended {
            Some(reason) => Err(Failure::Ended(reason.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pump(
        a: &mut Core<u8>,
        b: &mut Core<u8>,
        out_a: &mut Vec<Outcome<u8>>,
        out_b: &mut Vec<Outcome<u8>>,
    ) {
        loop {
            let mut moved = false;
            while let Some(bytes) = a.session_mut().poll_transmit() {
                b.handle_input(&bytes, out_b);
                moved = true;
            }
            a.route(out_a);
            while let Some(bytes) = b.session_mut().poll_transmit() {
                a.handle_input(&bytes, out_a);
                moved = true;
            }
            b.route(out_b);
            if !moved {
                return;
            }
        }
    }

    /// RFC 3080 3.1.3.2: TLS through the dispatch core: the listener's
    /// outcome asks for a certificate, the initiator's waiter gets the TLS
    /// information, and a request waiting when the channels went fails
    /// with the tuning reset.
    #[test]
    fn rfc3080_3_1_tls_waiter_and_tuning_reset() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = cert.signing_key.serialize_pem();
        let server =
            crate::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).unwrap();
        let mut a: Core<u8> = Core::new(Session::initiator(Config::default()));
        let mut b: Core<u8> = Core::new(Session::listener(Config {
            profiles: vec!["p".into(), crate::tls::TLS_URI.into()],
            ..Config::default()
        }));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let client = crate::tls::TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
        a.start_tls(client, 7).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::TlsRequested(request)) = out_b.pop() else {
            panic!("{out_b:?}")
        };
        assert_eq!(request.server_name.as_deref(), Some("localhost"));
        b.answer_tls(request.channel, Some(server));
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(
            out_b.iter().any(|o| matches!(o, Outcome::TuningReset)),
            "{out_b:?}"
        );
        let active = out_a
            .iter()
            .position(|o| matches!(o, Outcome::TlsActive(_)));
        let done = out_a
            .iter()
            .position(|o| matches!(o, Outcome::Complete(7, Ok(_))));
        assert!(
            active < done,
            "the waiter wakes after TLS is active: {out_a:?}"
        );
        assert!(
            a.session().peer_greeting().is_some(),
            "and with the new greeting"
        );
        let active = out_a.iter().find_map(|o| match o {
            Outcome::Complete(7, Ok(Done::TlsActive(info))) => Some(info),
            _ => None,
        });
        assert!(
            active.is_some_and(|i| !i.peer_certificates.is_empty()),
            "{out_a:?}"
        );
        assert!(a.session().is_tls_active() && b.session().is_tls_active());

        // Refused: the waiter gets the listener's code.
        let mut a: Core<u8> = Core::new(Session::initiator(Config::default()));
        let mut b: Core<u8> = Core::new(Session::listener(Config {
            profiles: vec![crate::tls::TLS_URI.into()],
            ..Config::default()
        }));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let client = crate::tls::TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
        a.start_tls(client, 8).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::TlsRequested(request)) = out_b.pop() else {
            panic!("{out_b:?}")
        };
        b.answer_tls(request.channel, None);
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(out_a.iter().any(|o| matches!(
            o,
            Outcome::Complete(8, Err(Failure::Refused(e))) if e.code == ReplyCode::REQUESTED_ACTION_NOT_TAKEN
        )), "{out_a:?}");
    }

    /// RFC 3080 4.1 through the dispatch core: the listener's outcome
    /// asks for a decision, the initiator's waiter gets the identity, and
    /// a denial reaches it as the peer's 535.
    #[test]
    fn rfc3080_4_1_sasl_waiter_and_decision() {
        use crate::sasl::{AuthAnswer, Mechanism, SaslClient};
        for (answer, accepted) in [(AuthAnswer::Accept, true), (AuthAnswer::Deny, false)] {
            let mut a: Core<u8> = Core::new(Session::initiator(Config::default()));
            let mut b: Core<u8> = Core::new(Session::listener(Config {
                profiles: vec![Mechanism::Plain.uri().into()],
                ..Config::default()
            }));
            let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
            a.start_sasl(SaslClient::plain("bob", "secret"), 9).unwrap();
            pump(&mut a, &mut b, &mut out_a, &mut out_b);
            let Some(Outcome::AuthRequested(request)) = out_b.pop() else {
                panic!("{out_b:?}")
            };
            assert_eq!(request.authcid.as_deref(), Some("bob"));
            assert_eq!(request.password.as_deref(), Some("secret"));
            b.answer_auth(request.channel, answer);
            pump(&mut a, &mut b, &mut out_a, &mut out_b);
            let result = out_a.iter().find_map(|o| match o {
                Outcome::Complete(9, r) => Some(r),
                _ => None,
            });
            match result {
                Some(Ok(Done::Authenticated(info))) if accepted => {
                    assert_eq!(info.authcid, "bob");
                    assert_eq!(
                        b.session().authenticated().map(|i| i.authcid.as_str()),
                        Some("bob")
                    );
                }
                Some(Err(Failure::Refused(e))) if !accepted => {
                    assert_eq!(e.code, ReplyCode::AUTHENTICATION_FAILURE);
                }
                other => panic!("accepted {accepted}: {other:?}"),
            }
        }
    }

    #[test]
    fn waiters_get_opens_replies_closes_and_the_end() {
        let mut a: Core<u8> = Core::new(Session::initiator(Config::default()));
        let mut b: Core<u8> = Core::new(Session::listener(Config {
            profiles: vec!["p".into()],
            ..Config::default()
        }));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let channel = a.open_channel(Profile::new("p"), None, 1).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Start(req)) = out_b.pop() else {
            panic!("{out_b:?}")
        };
        b.session_mut()
            .accept_start(req.channel, Profile::new("p"))
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(
            matches!(out_a.pop(), Some(Outcome::Complete(1, Ok(Done::Opened { channel: c, .. }))) if c == channel)
        );

        a.request(channel, Message::new("q"), 2).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Message(m)) = out_b.pop() else {
            panic!("{out_b:?}")
        };
        b.session_mut()
            .send_ans(channel, m.msgno, Message::new("a"))
            .unwrap();
        b.session_mut().send_nul(channel, m.msgno).unwrap();
        b.consumed(channel, m.credit);
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        match out_a.pop() {
            Some(Outcome::Complete(2, Ok(Done::Replied(Reply::Answers(answers))))) => {
                assert_eq!(answers, vec![(AnsNo(0), Message::new("a"))]);
            }
            other => panic!("{other:?}"),
        }

        // A request in flight when the connection ends fails with the reason.
        a.request(channel, Message::new("never answered"), 3)
            .unwrap();
        a.close(0, 4).unwrap();
        a.end(EndReason::Lost("reset".into()), &mut out_a);
        let results = std::mem::take(&mut out_a);
        assert!(results.iter().any(|o| matches!(
            o,
            Outcome::Complete(3, Err(Failure::Ended(EndReason::Lost(_))))
        )));
        assert!(
            results
                .iter()
                .any(|o| matches!(o, Outcome::Complete(4, Err(_))))
        );
        assert!(matches!(
            results.last(),
            Some(Outcome::Ended(EndReason::Lost(_)))
        ));
        a.end(EndReason::Shutdown, &mut out_a);
        assert!(out_a.is_empty(), "the end is reported once");
        assert!(a.live().is_err());
    }

    #[test]
    fn endless_answers_fail_the_waiter_at_the_message_limit() {
        let small = Config {
            max_message_size: 10,
            ..Config::default()
        };
        let mut a: Core<u8> = Core::new(Session::initiator(small));
        let mut b: Core<u8> = Core::new(Session::listener(Config {
            profiles: vec!["p".into()],
            ..Config::default()
        }));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let channel = a.open_channel(Profile::new("p"), None, 1).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Start(req)) = out_b.pop() else {
            panic!()
        };
        b.session_mut()
            .accept_start(req.channel, Profile::new("p"))
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        out_a.clear();
        a.request(channel, Message::new("q"), 2).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Message(m)) = out_b.pop() else {
            panic!()
        };
        for _ in 0..3 {
            b.session_mut()
                .send_ans(channel, m.msgno, Message::new("abcdef"))
                .unwrap();
        }
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(matches!(
            out_a.first(),
            Some(Outcome::Complete(
                2,
                Err(Failure::ReplyTooLarge { limit: 10 })
            ))
        ));
        // The answers after that are nobody's: they go to the handler.
        assert!(out_a[1..].iter().all(|o| matches!(o, Outcome::Message(_))));
    }

    /// A client and a server core with channel `p` open between them.
    fn open_pair() -> (Core<u8>, Core<u8>, u32) {
        let mut a: Core<u8> = Core::new(Session::initiator(Config::default()));
        let mut b: Core<u8> = Core::new(Session::listener(Config {
            profiles: vec!["p".into()],
            ..Config::default()
        }));
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let channel = a.open_channel(Profile::new("p"), None, 1).unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Start(req)) = out_b.pop() else {
            panic!()
        };
        b.session_mut()
            .accept_start(req.channel, Profile::new("p"))
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        (a, b, channel)
    }

    #[test]
    fn frame_delivery_and_whole_reply_waiters_exclude_each_other() {
        let (mut a, mut b, channel) = open_pair();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.request(channel, Message::new("whole"), 2).unwrap();
        assert_eq!(
            a.stream_frames(channel),
            Err(UsageError::RequestsPending { channel })
        );
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Message(m)) = out_b.pop() else {
            panic!()
        };
        b.session_mut()
            .send_rpy(m.channel, m.msgno, Message::new("reply"))
            .unwrap();
        out_a.clear();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(matches!(out_a.pop(), Some(Outcome::Complete(2, Ok(_)))));
        // No one waits any more: frames from now on.
        a.stream_frames(channel).unwrap();
        assert_eq!(
            a.request(channel, Message::new("x"), 3),
            Err(UsageError::Streaming { channel })
        );
        let msgno = a
            .session_mut()
            .send_msg(channel, Message::new("y"))
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Message(m)) = out_b.pop() else {
            panic!()
        };
        b.session_mut()
            .send_rpy(m.channel, m.msgno, Message::new("framed"))
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Frame(f)) = out_a.pop() else {
            panic!("expected a frame")
        };
        assert_eq!(
            (f.msgno, f.more, &f.payload[..]),
            (msgno, false, &b"\r\nframed"[..])
        );
        // Its credit goes back once handled, like a message's.
        a.message_handled(&MessageDone::of_frame(&f), Handled::Ran);
    }

    #[test]
    fn a_message_without_handler_gets_an_error_and_its_credit_back() {
        let (mut a, mut b, channel) = open_pair();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        out_a.clear();
        // Fill most of the window: without its credit back, the next could not pass.
        a.request(channel, Message::new(vec![0u8; 3000]), 2)
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        let Some(Outcome::Message(m)) = out_b.pop() else {
            panic!()
        };
        b.message_handled(&MessageDone::of(&m), Handled::NoHandler);
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        match out_a.pop() {
            Some(Outcome::Complete(2, Ok(Done::Replied(Reply::Err(e))))) => {
                assert_eq!(&e.body()[..], b"no handler for this channel");
            }
            other => panic!("{other:?}"),
        }
        a.request(channel, Message::new(vec![0u8; 3000]), 3)
            .unwrap();
        pump(&mut a, &mut b, &mut out_a, &mut out_b);
        assert!(
            matches!(out_b.pop(), Some(Outcome::Message(_))),
            "window reopened"
        );
    }
}
