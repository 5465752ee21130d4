//! Errors: what the peer did wrong ([`ProtocolError`], which ends the
//! session) and what the application asked for that cannot be done
//! ([`UsageError`], which changes nothing).

use thiserror::Error;

use crate::frame::{FrameError, FrameType};
use crate::numbers::MsgNo;
use crate::xml::XmlError;

/// A violation by the peer. The session is over: RFC 3080 2.2.1.1 says to
/// terminate it without a word, so the driver just closes the connection.
/// Events queued before the violation can still be polled.
///
/// ```
/// use beep_proto::ProtocolError;
/// let e = ProtocolError::ChannelNotOpen { channel: 5 };
/// assert!(e.to_string().contains("channel 5"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A poorly-formed header line (RFC 3080 2.2.1.1).
    #[error("poorly-formed frame header (RFC 3080 2.2.1.1): {0}")]
    Frame(#[from] FrameError),
    /// The payload was not followed by `END\r\n` (RFC 3080 2.2.1.3, RFC 3080 2.2.1.3).
    #[error("frame on channel {channel} not followed by END CRLF (RFC 3080 2.2.1.3)")]
    MissingTrailer {
        /// The channel of the frame.
        channel: u32,
    },
    /// A frame on a channel that is not open (RFC 3080 2.2.1.1).
    #[error("frame on channel {channel}, which is not open (RFC 3080 2.2.1.1)")]
    ChannelNotOpen {
        /// The channel named by the frame.
        channel: u32,
    },
    /// The seqno is not the next octet expected on the channel (RFC 3080 2.2.1.1).
    #[error("channel {channel}: seqno {got} where {expected} was expected (RFC 3080 2.2.1.1)")]
    UnexpectedSeqno {
        /// The channel.
        channel: u32,
        /// What we expected.
        expected: u32,
        /// What arrived.
        got: u32,
    },
    /// The frame goes beyond the window we advertised (RFC 3081 3.1.2).
    #[error(
        "channel {channel}: a {size}-octet frame exceeds the {available} octets of window we advertised (RFC 3081 3.1.2)"
    )]
    WindowExceeded {
        /// The channel.
        channel: u32,
        /// The frame's payload size.
        size: u32,
        /// Octets of window that were left.
        available: u32,
    },
    /// A MSG reuses a msgno that we have not finished answering (RFC 3080 2.2.1.1).
    #[error(
        "channel {channel}: MSG {msgno} reuses a msgno still awaiting our reply (RFC 3080 2.2.1.1)"
    )]
    MsgnoInUse {
        /// The channel.
        channel: u32,
        /// The reused msgno.
        msgno: MsgNo,
    },
    /// A reply to a MSG we never sent or that is already answered (RFC 3080 2.2.1.1).
    #[error(
        "channel {channel}: {frame_type:?} {msgno} answers no outstanding MSG (RFC 3080 2.2.1.1)"
    )]
    UnsolicitedReply {
        /// The channel.
        channel: u32,
        /// The reply's keyword.
        frame_type: FrameType,
        /// The msgno it named.
        msgno: MsgNo,
    },
    /// A reply that skips an earlier outstanding MSG (RFC 3080 2.6.1).
    #[error(
        "channel {channel}: reply to MSG {msgno} before the reply to MSG {expected} (RFC 3080 2.6.1)"
    )]
    ReplyOutOfOrder {
        /// The channel.
        channel: u32,
        /// The msgno replied to.
        msgno: MsgNo,
        /// The oldest outstanding msgno.
        expected: MsgNo,
    },
    /// A frame of another message inside a multi-frame message (RFC 3080 2.2.1.1, RFC 3080 2.2.1).
    #[error(
        "channel {channel}: {got:?} {got_msgno} interleaved inside {previous:?} {previous_msgno}, whose last frame said more was coming (RFC 3080 2.2.1.1)"
    )]
    InterleavedFrame {
        /// The channel.
        channel: u32,
        /// Keyword of the unfinished message.
        previous: FrameType,
        /// Its msgno.
        previous_msgno: MsgNo,
        /// Keyword of the frame that arrived.
        got: FrameType,
        /// Its msgno.
        got_msgno: MsgNo,
    },
    /// A NUL frame with `*` or a payload (RFC 3080 2.2.1.1).
    #[error("channel {channel}: NUL {msgno} with a continuation or a payload (RFC 3080 2.2.1.1)")]
    InvalidNul {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
    },
    /// A reply keyword that cannot follow the reply frames already received
    /// for the same MSG, e.g. RPY after ANS (RFC 3080 2.2.1.1, RFC 3080 2.1.1).
    #[error(
        "channel {channel}: {got:?} after {previous:?} in the reply to MSG {msgno} (RFC 3080 2.2.1.1)"
    )]
    MixedReply {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
        /// What the reply had been so far.
        previous: FrameType,
        /// What arrived.
        got: FrameType,
    },
    /// A SEQ acknowledging octets we never sent (RFC 3081 3.1.3).
    #[error(
        "channel {channel}: SEQ acknowledges up to {ackno}, but only up to {sent} was sent (RFC 3081 3.1.3)"
    )]
    AckBeyondSent {
        /// The channel.
        channel: u32,
        /// The ackno received.
        ackno: u32,
        /// Our next seqno.
        sent: u32,
    },
    /// A message grew beyond the configured reassembly limit.
    #[error("channel {channel}: message larger than the {limit}-octet limit")]
    MessageTooLarge {
        /// The channel.
        channel: u32,
        /// The configured limit.
        limit: usize,
    },
    /// The peer's greeting is larger than
    /// [`Config::max_greeting`](crate::Config::max_greeting).
    #[error("the peer's greeting is larger than the {limit}-octet limit")]
    GreetingTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Unfinished messages on all channels together held more than
    /// [`Config::max_reassembly`](crate::Config::max_reassembly) octets.
    #[error("unfinished messages hold more than the session's {limit}-octet budget")]
    ReassemblyBudgetExceeded {
        /// The configured budget.
        limit: usize,
    },
    /// Unfinished messages of all the sessions sharing a budget (a
    /// listener's connections) held more than its limit (see
    /// [`Session::share_reassembly_budget`](crate::Session::share_reassembly_budget)).
    #[error(
        "unfinished messages of all connections hold more than the shared {limit}-octet budget"
    )]
    SharedReassemblyBudgetExceeded {
        /// The shared budget's limit.
        limit: usize,
    },
    /// More MSGs awaiting our reply on all channels together than
    /// [`Config::max_pipelined_total`](crate::Config::max_pipelined_total).
    #[error("more than {limit} MSGs awaiting our reply on all channels")]
    TooManyPipelinedTotal {
        /// The configured limit.
        limit: usize,
    },
    /// More MSGs awaiting our reply on one channel than configured.
    #[error("channel {channel}: more than {limit} MSGs awaiting our reply")]
    TooManyPipelined {
        /// The channel.
        channel: u32,
        /// The configured limit.
        limit: usize,
    },
    /// More ANS messages in progress at once than configured.
    #[error("channel {channel}: more than {limit} ANS messages in progress at once")]
    TooManyAnswers {
        /// The channel.
        channel: u32,
        /// The configured limit.
        limit: usize,
    },
    /// The application is not polling events and the peer keeps sending.
    #[error("more than {limit} events waiting to be polled")]
    TooManyPendingEvents {
        /// The configured limit.
        limit: usize,
    },
    /// The first frame was not the greeting, RPY 0 0 (RFC 3080 2.3.1.1).
    #[error("expected the peer's greeting (RPY or ERR on channel 0, msgno 0) first (RFC 3080 2.4)")]
    GreetingExpected,
    /// A channel-0 reply that does not fit the request it answers (RFC 3080 2.2.2.1).
    #[error("poorly-formed reply on channel 0: {reason} (RFC 3080 2.2.2.1)")]
    BadChannelZeroReply {
        /// What was wrong.
        reason: String,
    },
    /// A channel-0 body that is not valid beep+xml where a reply is due.
    #[error("invalid beep+xml on channel 0: {0}")]
    Xml(#[from] XmlError),
    /// TLS failed (RFC 3080 3.1): the session ends with
    /// [`SessionEnd::TlsFailed`](crate::SessionEnd::TlsFailed).
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The SASL server of our authentication answered out of the protocol
    /// (RFC 3080 4.1): a malformed `<blob>` (base64 included), one over
    /// [`Config::max_sasl_blob`](crate::Config::max_sasl_blob), more rounds
    /// than [`Config::max_sasl_rounds`](crate::Config::max_sasl_rounds),
    /// or a message with no place in the exchange.
    #[error("SASL: {0}")]
    Sasl(#[from] crate::sasl::SaslError),
}

/// A call the application made that cannot be done in the session's
/// current state. Nothing was changed (except that an
/// [`OutputFull`](UsageError::OutputFull) refusal arranges a later
/// [`Event::Writable`](crate::Event::Writable)); a message given to a
/// refused send is dropped.
///
/// ```
/// use beep_proto::UsageError;
/// assert!(UsageError::UnknownChannel { channel: 9 }.to_string().contains("9"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UsageError {
    /// No such channel, or it is not open yet.
    #[error("channel {channel} is not open")]
    UnknownChannel {
        /// The channel.
        channel: u32,
    },
    /// The channel is being closed: no new MSG may be sent on it (RFC 3080 2.3.1.3).
    #[error("channel {channel} is closing: no new MSG may be sent")]
    ChannelClosing {
        /// The channel.
        channel: u32,
    },
    /// No MSG with this msgno awaits a reply on the channel.
    #[error("no MSG {msgno} awaits a reply on channel {channel}")]
    NoSuchRequest {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
    },
    /// The reply to this MSG is already complete, or a RPY/ERR was
    /// attempted after ANS.
    #[error("the reply to MSG {msgno} on channel {channel} cannot take a {frame_type:?} now")]
    ReplyMismatch {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
        /// What was attempted.
        frame_type: FrameType,
    },
    /// No start request for this channel waits for an answer.
    #[error("no start request for channel {channel} awaits an answer")]
    NoPendingStart {
        /// The channel.
        channel: u32,
    },
    /// A start request may only be accepted with one of the profiles it
    /// offered (RFC 3080 2.3.1.2); the peer would end the session otherwise.
    #[error("channel {channel}: the peer did not offer profile {profile}")]
    ProfileNotOffered {
        /// The channel.
        channel: u32,
        /// The profile URI given.
        profile: String,
    },
    /// No close request for this channel waits for an answer.
    #[error("no close request for channel {channel} awaits an answer")]
    NoPendingClose {
        /// The channel.
        channel: u32,
    },
    /// The channel number is of the peer's parity, out of range, or in use.
    #[error("channel number {channel} is not ours to use (wrong parity, out of range, or in use)")]
    ChannelNumberUnavailable {
        /// The channel.
        channel: u32,
    },
    /// The channel delivers frames (streaming): no request can wait for a
    /// whole reply on it; its replies go to the frame handler.
    #[error("channel {channel} delivers frames: a request cannot wait for a whole reply on it")]
    Streaming {
        /// The channel.
        channel: u32,
    },
    /// Requests on the channel still wait for whole replies: they must be
    /// answered before the channel can deliver frames.
    #[error("requests on channel {channel} still wait for whole replies")]
    RequestsPending {
        /// The channel.
        channel: u32,
    },
    /// A message is half received on the channel: finish it first.
    #[error("a message is half received on channel {channel}")]
    MessageInProgress {
        /// The channel.
        channel: u32,
    },
    /// A start request must offer at least one profile (RFC 3080 2.3.1.2).
    #[error("a start request needs at least one profile")]
    NoProfiles,
    /// Piggybacked initialization content is limited to 4K octets (RFC 3080 2.3.1.2).
    #[error("initialization content for profile {uri} is longer than 4096 octets")]
    InitContentTooLarge {
        /// The profile.
        uri: String,
    },
    /// The configured channel limit is reached.
    #[error("no channel number available (limit {limit})")]
    TooManyChannels {
        /// The configured limit.
        limit: usize,
    },
    /// Too many of our MSGs await replies on this channel.
    #[error("{limit} MSGs already await replies on channel {channel}")]
    TooManyOutstanding {
        /// The channel.
        channel: u32,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than a frame can say (2^31-1 octets).
    #[error("message of {len} octets is larger than BEEP allows")]
    MessageTooLarge {
        /// Its size.
        len: usize,
    },
    /// A configuration the session cannot honour (see
    /// [`Config::validate`](crate::Config::validate)).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// More output is queued than
    /// [`Config::max_queued_output`](crate::Config::max_queued_output)
    /// allows: nothing was sent. Keep writing what
    /// [`Session::poll_transmit`](crate::Session::poll_transmit) gives and
    /// keep reading input (the peer's SEQ frames are what drain the queue);
    /// [`Event::Writable`](crate::Event::Writable) says when to try again.
    #[error("{queued} octets of output are queued, above the limit of {limit}")]
    OutputFull {
        /// Octets queued.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The session is closing or has ended.
    #[error("the session is closing or has ended")]
    SessionClosed,
    /// TLS cannot begin now (RFC 3080 3): it is active already, a tuning
    /// is under way, channels are open, or it is not offered.
    #[error("TLS cannot begin: {reason}")]
    TuningNotPossible {
        /// Why.
        reason: &'static str,
    },
    /// A TLS negotiation is under way (RFC 3080 3.1.3): nothing new may
    /// start until it ends.
    #[error("a TLS negotiation is under way")]
    TuningInProgress,
    /// No TLS request of the peer's awaits an answer on this channel.
    #[error("no TLS request awaits an answer on channel {channel}")]
    NoPendingTls {
        /// The channel named.
        channel: u32,
    },
    /// SASL authentication cannot begin (RFC 3080 4.1): the peer does not
    /// offer the mechanism, or it is not available here.
    #[error("SASL authentication cannot begin: {reason}")]
    AuthNotPossible {
        /// Why.
        reason: &'static str,
    },
    /// A SASL exchange is under way: one at a time.
    #[error("a SASL authentication is under way")]
    AuthInProgress,
    /// The session is authenticated already: RFC 3080 4 allows no
    /// further attempt.
    #[error("the session is authenticated already (RFC 3080 4)")]
    AlreadyAuthenticated,
    /// No authentication request of the peer's awaits an answer on this
    /// channel (or, for an abort, no exchange of ours runs there).
    #[error("no SASL authentication awaits an answer on channel {channel}")]
    NoPendingAuth {
        /// The channel named.
        channel: u32,
    },
    /// The answer does not fit the request: a secret where a decision
    /// was asked for, or the reverse. The request still awaits one.
    #[error("channel {channel}: the authentication request needs {need:?}")]
    AuthAnswerMismatch {
        /// The channel.
        channel: u32,
        /// What the request needs.
        need: crate::sasl::AuthNeed,
    },
    /// The channel runs a SASL profile: its messages are the session's.
    #[error("channel {channel} runs a SASL profile: its messages are the session's")]
    SaslChannel {
        /// The channel.
        channel: u32,
    },
    /// The SASL mechanism refused our credentials (an empty PLAIN user,
    /// a NUL in a name).
    #[error("SASL: {0}")]
    Sasl(crate::sasl::SaslError),
    /// Nothing is being fed through this
    /// [`FeedId`](crate::FeedId): its message was finished (its last
    /// piece was given), or it is another session's.
    #[error("no message is being fed as MSG/reply {msgno} on channel {channel}")]
    NoSuchFeed {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
    },
    /// The peer replied to this fed MSG before it was complete: the rest
    /// is not wanted, and the MSG was ended with what had been sent (as
    /// for a whole MSG, RFC 3080 2.6.3). The feed is over.
    #[error("the peer replied to MSG {msgno} on channel {channel} before it was complete")]
    FeedAbandoned {
        /// The channel.
        channel: u32,
        /// The msgno.
        msgno: MsgNo,
    },
}
