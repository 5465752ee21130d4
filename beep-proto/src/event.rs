//! What the session tells the application: [`Event`], polled with
//! [`Session::poll_event`](crate::Session::poll_event).

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::frame::FrameType;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::xml::{ErrorElement, Greeting, Profile};

/// Something that happened in the session.
///
/// Decisions (start a channel? close it?) arrive as events and are answered
/// by a call on the session; the session never waits on the application.
///
/// ```
/// use beep_proto::{Event, Session, Config};
/// let mut listener = Session::listener(Config::default());
/// let mut initiator = Session::initiator(Config::default());
/// while let Some(bytes) = initiator.poll_transmit() {
///     listener.handle_input(&bytes).unwrap();
/// }
/// assert!(matches!(listener.poll_event(), Some(Event::Greeting(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer's greeting arrived (RFC 3080 2.4).
    Greeting(Greeting),
    /// The peer asks to start a channel. Answer with
    /// [`Session::accept_start`](crate::Session::accept_start) or
    /// [`Session::deny_start`](crate::Session::deny_start).
    StartRequested(StartRequest),
    /// A channel we asked for is open; `profile` is the one the peer chose,
    /// with its piggybacked reply, if any.
    ChannelOpened {
        /// The channel number.
        channel: u32,
        /// The profile the peer chose.
        profile: Profile,
    },
    /// The peer refused a channel we asked for.
    ChannelRefused {
        /// The channel number we proposed.
        channel: u32,
        /// The peer's reason.
        error: ErrorElement,
    },
    /// A complete message (MSG, RPY, ERR, one ANS, or the NUL ending a
    /// one-to-many reply).
    Message(IncomingMessage),
    /// One frame on a channel in streaming mode.
    Frame(IncomingFrame),
    /// The peer asks to close a channel (0: release the session). Answer
    /// with [`Session::accept_close`](crate::Session::accept_close) or
    /// [`Session::deny_close`](crate::Session::deny_close).
    CloseRequested {
        /// The channel, 0 for the whole session.
        channel: u32,
        /// The peer's reply code.
        code: ReplyCode,
        /// The language of `text` (`xml:lang`), if the peer named one.
        lang: Option<String>,
        /// The peer's diagnostic text, possibly empty.
        text: String,
    },
    /// The channel is closed; no more events will name it.
    ChannelClosed {
        /// The channel number.
        channel: u32,
    },
    /// The peer refused our request to close a channel (0: the session);
    /// it stays open.
    CloseRefused {
        /// The channel number.
        channel: u32,
        /// The peer's reason.
        error: ErrorElement,
    },
    /// A send was refused with
    /// [`UsageError::OutputFull`](crate::UsageError::OutputFull), and the
    /// queued output has since drained to three quarters of
    /// [`Config::max_queued_output`](crate::Config::max_queued_output):
    /// sending may resume. Reported once per refusal episode, from
    /// [`Session::poll_transmit`](crate::Session::poll_transmit) (or a
    /// channel close that dropped queued output).
    Writable,
    /// The peer asks to begin TLS (RFC 3080 3.1). Answer with
    /// [`Session::accept_tls`](crate::Session::accept_tls) or
    /// [`Session::deny_tls`](crate::Session::deny_tls); meanwhile no new
    /// channel or MSG of ours may start.
    TlsRequested(TlsRequest),
    /// The peer refused our request to begin TLS (its `<error>`); the
    /// session goes on in plain.
    TlsRefused {
        /// The TLS channel.
        channel: u32,
        /// The peer's reason.
        error: ErrorElement,
    },
    /// A tuning profile succeeded (RFC 3080 3, 3.1.3.2): every channel,
    /// channel 0 included, is closed without a word, what was waiting on
    /// them is gone, and new greetings follow. Channel numbers start over.
    TuningReset,
    /// The TLS handshake is over: what follows is encrypted, and the
    /// peer's new greeting will come over it.
    TlsActive(crate::tls::TlsInfo),
    /// The peer asks to authenticate (RFC 3080 4.1) and the session needs
    /// the application: the decision on the credentials, or the user's
    /// secret. Answer with
    /// [`Session::answer_auth`](crate::Session::answer_auth); meanwhile
    /// the exchange waits, and nothing else does.
    AuthRequested(crate::sasl::AuthRequest),
    /// Authentication succeeded (RFC 3080 4), on either side: the identity
    /// holds for every channel of the session, present and future, and
    /// no further authentication is allowed. No reset follows (no
    /// security layer is negotiated).
    Authenticated(crate::sasl::AuthInfo),
    /// Our authentication failed (RFC 3080 4.1): the listener's `<error>`
    /// (to our start, to one of our blobs, or to our abort), or our own
    /// verdict when its success did not verify (SCRAM). Another attempt
    /// may start on a new channel.
    AuthFailed {
        /// The SASL channel (it may stay open; closing it is ours).
        channel: u32,
        /// Why: the listener says only "authentication failure" (535)
        /// for credentials.
        error: ErrorElement,
    },
    /// The session is over, and why; always the last event, and exactly
    /// one per session, whatever ended it (a release, a refusal, a
    /// violation, the end of the transport). Send what
    /// [`Session::poll_transmit`](crate::Session::poll_transmit) still
    /// has, then close the connection (see
    /// [closing without a reset](crate::driver_guide#closing-without-a-reset)).
    SessionEnded(SessionEnd),
}

/// Why a session ended: [`Event::SessionEnded`] and
/// [`Session::end_reason`](crate::Session::end_reason).
///
/// ```
/// use beep_proto::{Session, SessionEnd};
/// let mut s = Session::listener(Default::default());
/// s.handle_eof();
/// assert_eq!(s.end_reason(), Some(&SessionEnd::TransportClosed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The TLS negotiation failed (RFC 3080 3.1): a refused certificate,
    /// an alert from the peer, bytes that are not TLS, or the end of the
    /// transport during the handshake. What rustls still has to say (its
    /// alert) may be sent.
    TlsFailed(crate::tls::TlsError),
    /// Released by mutual agreement: channel 0 was closed (RFC 3080 2.3.1.3,
    /// 2.4). What is still queued (our `<ok/>`) goes out.
    Released,
    /// The listener answered the greeting with an `<error>` (RFC 3080 2.4):
    /// the peer's refusal, or ours in a [`Session::refusing`](crate::Session::refusing)
    /// session.
    Refused(ErrorElement),
    /// The peer broke a rule (RFC 3080 2.2.1.1): the session ends without
    /// a word, and nothing more is sent.
    Violation(ProtocolError),
    /// The transport ended ([`Session::handle_eof`](crate::Session::handle_eof))
    /// before the session was released. What is still queued may be sent
    /// (the peer may only have closed its sending half).
    TransportClosed,
}

impl std::fmt::Display for SessionEnd {
    /// ```
    /// assert_eq!(beep_proto::SessionEnd::Released.to_string(), "released by agreement");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Released => f.write_str("released by agreement"),
            SessionEnd::Refused(e) => write!(f, "session refused: {} {}", e.code, e.text),
            SessionEnd::Violation(e) => write!(f, "protocol violation: {e}"),
            SessionEnd::TransportClosed => f.write_str("the transport closed before a release"),
            SessionEnd::TlsFailed(e) => write!(f, "TLS failed: {e}"),
        }
    }
}

/// The peer's request to begin TLS (RFC 3080 3.1): answer it with
/// [`Session::accept_tls`](crate::Session::accept_tls) (choosing the
/// certificate for `server_name`) or
/// [`Session::deny_tls`](crate::Session::deny_tls).
///
/// ```
/// let r = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
/// assert_eq!(r.channel, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// The TLS channel (its start, or the channel the `<ready/>` came on).
    pub channel: u32,
    /// The `serverName` of the start, or the one bound to the session
    /// (RFC 3080 2.3.1.2): the certificate to present is chosen by it.
    pub server_name: Option<String>,
    /// The `<ready>` element's `version`: the earliest TLS version the
    /// peer accepts ("1", the default, when absent).
    pub version: Option<String>,
}

/// A request from the peer to start a channel (RFC 3080 2.3.1.2).
///
/// ```
/// use beep_proto::StartRequest;
/// let r = StartRequest { channel: 1, server_name: None, profiles: vec![] };
/// assert_eq!(r.channel, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The channel number the peer proposed.
    pub channel: u32,
    /// The `serverName` the peer asked for, if any.
    pub server_name: Option<String>,
    /// The profiles offered, in the peer's order of preference, with their
    /// piggybacked initialization content.
    pub profiles: Vec<Profile>,
}

/// What kind of message arrived.
///
/// ```
/// use beep_proto::MessageKind;
/// assert_eq!(MessageKind::Ans { ansno: beep_proto::AnsNo(2) }.frame_type(), beep_proto::frame::FrameType::Ans);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A request.
    Msg,
    /// A positive reply.
    Rpy,
    /// A negative reply.
    Err,
    /// One answer of a one-to-many reply.
    Ans {
        /// The answer number.
        ansno: AnsNo,
    },
    /// The end of a one-to-many reply.
    Nul,
}

impl MessageKind {
    /// The frame keyword of this kind.
    ///
    /// ```
    /// use beep_proto::{MessageKind, frame::FrameType};
    /// assert_eq!(MessageKind::Msg.frame_type(), FrameType::Msg);
    /// ```
    pub const fn frame_type(self) -> FrameType {
        match self {
            MessageKind::Msg => FrameType::Msg,
            MessageKind::Rpy => FrameType::Rpy,
            MessageKind::Err => FrameType::Err,
            MessageKind::Ans { .. } => FrameType::Ans,
            MessageKind::Nul => FrameType::Nul,
        }
    }
}

/// A complete message received on a channel.
///
/// `credit` is how many octets of receive window the message holds. With
/// automatic credit (the default) the window is given back when the event
/// is polled; otherwise give it back with
/// [`Session::consumed`](crate::Session::consumed) once the message is
/// processed, so a slow application slows its peer instead of buffering.
///
/// ```
/// use beep_proto::{IncomingMessage, Message, MessageKind, MsgNo};
/// let m = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Msg, message: Message::new("x"), credit: 3 };
/// assert_eq!(&m.message.body()[..], b"x");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The channel it arrived on.
    pub channel: u32,
    /// Its message number (for replies: the MSG being answered).
    pub msgno: MsgNo,
    /// MSG, RPY, ERR, ANS or NUL.
    pub kind: MessageKind,
    /// Headers and body (empty for NUL).
    pub message: Message,
    /// Octets of receive window this message holds until consumed.
    pub credit: u32,
}

impl IncomingMessage {
    /// The message as one final frame whose payload is the whole MIME
    /// entity (for a frame handler that gets a message routed whole).
    ///
    /// ```
    /// use beep_proto::{IncomingMessage, Message, MessageKind, MsgNo};
    /// let m = IncomingMessage { channel: 1, msgno: MsgNo(2), kind: MessageKind::Msg, message: Message::new("hi"), credit: 4 };
    /// let f = m.into_frame();
    /// assert_eq!((f.msgno, f.more, &f.payload[..]), (MsgNo(2), false, &b"\r\nhi"[..]));
    /// ```
    pub fn into_frame(self) -> IncomingFrame {
        let [headers, body] = self.message.into_wire_parts();
        let mut entity = bytes::BytesMut::with_capacity(headers.len() + body.len());
        entity.extend_from_slice(&headers);
        entity.extend_from_slice(&body);
        let payload = entity.freeze();
        IncomingFrame {
            channel: self.channel,
            msgno: self.msgno,
            kind: self.kind,
            more: false,
            payload,
        }
    }
}

/// One frame received on a channel in streaming mode: the payload is raw
/// (the MIME header block, if any, is at the start of the first frame).
///
/// ```
/// use beep_proto::{IncomingFrame, MessageKind, MsgNo};
/// let f = IncomingFrame { channel: 1, msgno: MsgNo(0), kind: MessageKind::Msg, more: true, payload: bytes::Bytes::new() };
/// assert!(f.more);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingFrame {
    /// The channel it arrived on.
    pub channel: u32,
    /// Its message number.
    pub msgno: MsgNo,
    /// MSG, RPY, ERR, ANS or NUL.
    pub kind: MessageKind,
    /// True if more frames of this message follow.
    pub more: bool,
    /// The payload octets; also the credit to give back when consumed.
    pub payload: Bytes,
}
