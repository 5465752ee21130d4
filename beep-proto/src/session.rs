//! The session: one BEEP connection as a pure state machine.
//!
//! Bytes from the peer go in with [`Session::handle_input`]; bytes for the
//! peer come out of [`Session::poll_transmit`]; what happened comes out of
//! [`Session::poll_event`]; the application acts with the other methods.
//! After any call, drain `poll_event` and `poll_transmit`.

mod channel_zero;
mod close;
mod feed;
mod input;
mod lifecycle;
mod output;
mod sasl;
mod tuning;

pub use feed::FeedId;
pub(crate) use lifecycle::ChannelState;

use std::collections::VecDeque;

use bytes::BytesMut;

use crate::budget::SharedBudget;
use crate::channel::{AfterSend, Awaiting, Channel, Outgoing};
use crate::config::{Config, DEFAULT_WINDOW};
use crate::error::UsageError;
use crate::event::{Event, SessionEnd};
use crate::frame::{FrameHeader, FrameType, MAX_31BIT};
use crate::idmap::IdMap;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::xml::{ErrorElement, Greeting, Profile};

use channel_zero::Request;
use lifecycle::SessionState;

/// Which end of the connection we are (RFC 3080 2.1).
///
/// ```
/// use beep_proto::Role;
/// assert_ne!(Role::Initiator, Role::Listener);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We opened the connection; our channels have odd numbers.
    Initiator,
    /// We accepted the connection; our channels have even numbers.
    Listener,
}

/// A peer's start request that the application has not answered yet.
#[derive(Debug)]
struct PendingStart {
    /// The `<start>` MSG, answered on channel 0.
    msgno: MsgNo,
    server_name: Option<String>,
    /// The URIs it offered: the application must choose one of them.
    offered: Vec<String>,
}

/// A BEEP session (RFC 3080 2.4) over one connection, without any I/O.
///
/// ```
/// use beep_proto::{Config, Event, Message, Session, xml::Profile};
///
/// const ECHO: &str = "http://example.org/beep/echo";
/// let mut client = Session::initiator(Config::default());
/// let mut server = Session::listener(Config { profiles: vec![ECHO.into()], ..Config::default() });
///
/// // Moves bytes both ways until neither side has anything to say.
/// fn pump(a: &mut Session, b: &mut Session) {
///     loop {
///         let mut moved = false;
///         while let Some(bytes) = a.poll_transmit() { b.handle_input(&bytes).unwrap(); moved = true; }
///         while let Some(bytes) = b.poll_transmit() { a.handle_input(&bytes).unwrap(); moved = true; }
///         if !moved { break; }
///     }
/// }
///
/// let channel = client.open_channel(vec![Profile::new(ECHO)], None).unwrap();
/// pump(&mut client, &mut server);
/// while let Some(event) = server.poll_event() {
///     if let Event::StartRequested(req) = event {
///         server.accept_start(req.channel, Profile::new(ECHO)).unwrap();
///     }
/// }
/// pump(&mut client, &mut server);
/// let msgno = client.send_msg(channel, Message::new("ping")).unwrap();
/// pump(&mut client, &mut server);
/// while let Some(event) = server.poll_event() {
///     if let Event::Message(m) = event {
///         server.send_rpy(m.channel, m.msgno, m.message).unwrap();
///     }
/// }
/// pump(&mut client, &mut server);
/// let reply = std::iter::from_fn(|| client.poll_event())
///     .find_map(|e| match e { Event::Message(m) => Some(m), _ => None })
///     .unwrap();
/// assert_eq!((reply.msgno, &reply.message.body()[..]), (msgno, &b"ping"[..]));
/// ```
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    /// Where the session stands (see [`SessionState`] for its
    /// transitions).
    state: SessionState,
    channels: IdMap<Channel>,
    /// Channels with a frame ready to go, in round-robin order.
    ready: VecDeque<u32>,
    /// Channels with a SEQ due (`Channel::pending_seq`), written before
    /// any data frame by [`Session::write_seqs`].
    seqs_due: output::SeqsDue,
    out: BytesMut,
    /// Payload octets queued but not yet framed.
    queued: usize,
    /// Payload octets of replies held until their turn (RFC 3080 2.6.1):
    /// not counted as queued output, since only the earlier replies the
    /// application still owes can release them.
    held: usize,
    inbuf: BytesMut,
    /// The header of the frame whose payload we are waiting for.
    reading: Option<FrameHeader>,
    events: VecDeque<Event>,
    peer_greeting: Option<Greeting>,
    /// What each of our outstanding channel-0 MSGs asked, in msgno order.
    requests: VecDeque<Request>,
    /// Channel-0 requests held until the peer's greeting has arrived.
    deferred: Vec<(Request, Vec<u8>)>,
    /// Peer start requests awaiting the application, by channel: no
    /// channel yet, until `accept_start` makes it `Accepted`.
    pending_starts: IdMap<PendingStart>,
    /// Peer close requests awaiting the application: channel -> msgno.
    /// The channel's close state stays `Idle` meanwhile (see
    /// [`ChannelState`]); 0 is the peer's release of the session.
    pending_closes: IdMap<MsgNo>,
    /// Channels with close work in progress: our close `Wanted`, or
    /// theirs `Agreed` or `Crossed` and not answered yet.
    closing: Vec<u32>,
    next_channel: u32,
    server_name: Option<String>,
    /// A send was refused for lack of room; [`Event::Writable`] is due.
    output_blocked: bool,
    /// Octets held by unfinished messages on all channels.
    reassembling: usize,
    /// A budget for unfinished messages shared with other sessions (a
    /// listener's), counted with `reassembling`.
    shared_reassembly: Option<SharedBudget>,
    /// Messages in the channels' send queues (each costs memory beyond
    /// its octets: see [`crate::channel::ENTRY_COST`]).
    queued_entries: usize,
    /// The peer's MSGs awaiting our reply, on all channels.
    unanswered_total: usize,
    /// Handed out by `poll_transmit` inside [`Session::write_to`] and not
    /// yet written: sent first next time.
    unwritten: bytes::Bytes,
    /// Messages being fed in pieces ([`Session::feed`]): empty unless the
    /// application uses the feeder.
    feeds: feed::Feeds,
    /// Where a TLS negotiation stands (`session/tuning.rs`).
    tuning: tuning::Tuning,
    /// TLS: the rustls layer and its buffers.
    tls: tuning::TlsState,
    /// Nothing more is written until the tuning moves on: our `<ready/>`
    /// is out (RFC 3080 3.1.3.1).
    hold: bool,
    /// The tuning reset happened while output was being framed: what was
    /// framed before it goes out plain, the rest waits for the next
    /// (encrypted) call.
    switched: bool,
    /// SASL: the exchange under way, its channels, who authenticated
    /// (`session/sasl.rs`).
    sasl: sasl::SaslState,
}

impl Session {
    /// A session for the side that opened the connection. Its greeting is
    /// queued at once (RFC 3080 2.4).
    ///
    /// The constructors never fail: what the session cannot honour is
    /// clamped (a receive window to 4096..=2^31-1, a frame size and a
    /// transmit batch to at least 1). Call [`Config::validate`] first to
    /// refuse such a configuration instead, as the drivers do.
    ///
    /// ```
    /// use beep_proto::{Config, Session};
    /// let small = Config { receive_window: 100, ..Config::default() };
    /// assert!(small.validate().is_err());
    /// assert_eq!(Session::initiator(small).config().receive_window, 4096);
    /// ```
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(beep_proto::Config::default());
    /// assert!(s.poll_transmit().unwrap().starts_with(b"RPY 0 0 . 0 "));
    /// ```
    pub fn initiator(config: Config) -> Self {
        Self::new(Role::Initiator, config)
    }

    /// A session for the side that accepted the connection (the
    /// configuration is clamped as for [`Session::initiator`]).
    ///
    /// ```
    /// let s = beep_proto::Session::listener(beep_proto::Config::default());
    /// assert_eq!(s.role(), beep_proto::Role::Listener);
    /// ```
    pub fn listener(config: Config) -> Self {
        Self::new(Role::Listener, config)
    }

    /// A listener that is unavailable: it answers with an `<error>` instead
    /// of a greeting and ends the session (RFC 3080 2.4, RFC 3080 2.4).
    ///
    /// ```
    /// use beep_proto::{Config, Session, reply_code::ReplyCode};
    /// let mut s = Session::refusing(Config::default(), ReplyCode::SERVICE_NOT_AVAILABLE, "busy");
    /// assert!(s.poll_transmit().unwrap().starts_with(b"ERR 0 0 . 0 "));
    /// assert!(s.is_ended());
    /// ```
    pub fn refusing(config: Config, code: ReplyCode, text: &str) -> Self {
        let mut session = Self::bare(Role::Listener, config);
        let lang = session.diagnostic_lang(text);
        let body = channel_zero::error_body(code, lang.clone(), text);
        session.queue_greeting(FrameType::Err, body);
        let error = ErrorElement {
            code,
            lang,
            text: text.to_owned(),
        };
        session.end(SessionEnd::Refused(error));
        session
    }

    fn new(role: Role, config: Config) -> Self {
        let mut session = Self::bare(role, config);
        let greeting = channel_zero::greeting_body(session.advertised_profiles(), &session.config);
        session.queue_greeting(FrameType::Rpy, greeting);
        session
    }

    fn bare(role: Role, mut config: Config) -> Self {
        config.receive_window = config.receive_window.clamp(DEFAULT_WINDOW, MAX_31BIT);
        config.max_frame_size = config.max_frame_size.clamp(1, MAX_31BIT);
        config.transmit_batch = config.transmit_batch.max(1);
        let mut zero = Channel::new(0, DEFAULT_WINDOW, DEFAULT_WINDOW);
        zero.state = ChannelState::channel_zero();
        // The peer's greeting answers an implicit MSG 0 of ours (RFC 3080 2.4).
        zero.awaiting.push_back(Awaiting {
            msgno: MsgNo(0),
            reply: None,
            awaited: false,
        });
        Session {
            role,
            state: SessionState::Greeting,
            channels: IdMap::from_iter([(0, zero)]),
            ready: VecDeque::new(),
            seqs_due: output::SeqsDue::default(),
            out: BytesMut::new(),
            queued: 0,
            held: 0,
            inbuf: BytesMut::new(),
            reading: None,
            events: VecDeque::new(),
            peer_greeting: None,
            requests: VecDeque::from([Request::Greeting]),
            deferred: Vec::new(),
            pending_starts: IdMap::default(),
            pending_closes: IdMap::default(),
            closing: Vec::new(),
            next_channel: if role == Role::Initiator { 1 } else { 2 },
            server_name: None,
            output_blocked: false,
            unwritten: bytes::Bytes::new(),
            reassembling: 0,
            shared_reassembly: None,
            queued_entries: 0,
            unanswered_total: 0,
            feeds: feed::Feeds::default(),
            tuning: tuning::Tuning::None,
            tls: tuning::TlsState::default(),
            hold: false,
            switched: false,
            sasl: sasl::SaslState::default(),
            config,
        }
    }

    /// Our role.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert_eq!(s.role(), beep_proto::Role::Initiator);
    /// ```
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert_eq!(s.config().receive_window, 4096);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counts this session's unfinished messages in `budget` too, beside
    /// its own [`Config::max_reassembly`]: a peer whose unfinished
    /// messages would take the sessions sharing it past its limit ends
    /// its session with [`ProtocolError::SharedReassemblyBudgetExceeded`](crate::ProtocolError::SharedReassemblyBudgetExceeded).
    /// The drivers' listeners give all their connections one (so that
    /// many connections each under their own limit cannot add up to
    /// more). What the session holds is given back as its messages
    /// complete, its channels close, and when it is dropped.
    ///
    /// ```
    /// use beep_proto::{Session, SharedBudget};
    /// let budget = SharedBudget::new(1 << 20);
    /// let mut a = Session::listener(Default::default());
    /// let mut b = Session::listener(Default::default());
    /// a.share_reassembly_budget(budget.clone());
    /// b.share_reassembly_budget(budget.clone());
    /// assert_eq!(budget.used(), 0);
    /// ```
    pub fn share_reassembly_budget(&mut self, budget: SharedBudget) {
        if let Some(old) = self.shared_reassembly.take() {
            old.update(self.reassembling, 0);
        }
        budget.update(0, self.reassembling);
        self.shared_reassembly = Some(budget);
    }

    /// Sets what unfinished messages hold, in the shared budget too.
    pub(crate) fn set_reassembling(&mut self, octets: usize) {
        if let Some(shared) = &self.shared_reassembly {
            shared.update(self.reassembling, octets);
        }
        self.reassembling = octets;
    }

    /// True when nothing is under way: no message of either side awaits
    /// its reply, none is half received, and nothing waits to be sent.
    /// What an idle timeout waits for, so that a long request (a handler
    /// still working on its reply, or the peer on ours) is never taken
    /// for silence.
    ///
    /// ```
    /// use beep_proto::Session;
    /// let mut a = Session::initiator(Default::default());
    /// let mut b = Session::listener(Default::default());
    /// assert!(!a.is_quiet(), "the greetings are under way");
    /// while let Some(bytes) = a.poll_transmit() {
    ///     b.handle_input(&bytes).unwrap();
    /// }
    /// while let Some(bytes) = b.poll_transmit() {
    ///     a.handle_input(&bytes).unwrap();
    /// }
    /// assert!(a.is_quiet() && b.is_quiet());
    /// ```
    pub fn is_quiet(&self) -> bool {
        self.unanswered_total == 0
            && self.reassembling == 0
            && self.held == 0
            && !self.wants_transmit()
            && self.queued_output() == 0
            && self
                .channels
                .values()
                .all(|ch| ch.awaiting.is_empty() && ch.in_progress.is_none())
    }

    /// What the output the application has handed over, not yet written,
    /// costs: its octets, plus 128 per message still queued (an empty
    /// message costs memory too, so many of them count). A driver bounds
    /// its outbound memory by waiting while this is above a limit (the
    /// peer's windows decide how fast it drains); the session refuses
    /// sends above [`Config::max_queued_output`]. Replies held back for
    /// reply order are not included: waiting on them could wait for the
    /// very reply that releases them.
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.queued_output() > 0); // the greeting
    /// while s.poll_transmit().is_some() {}
    /// assert_eq!(s.queued_output(), 0);
    /// ```
    pub fn queued_output(&self) -> usize {
        self.queued
            + self.queued_entries * crate::channel::ENTRY_COST
            + self.seqs_due.octets()
            + self.out.len()
            + self.unwritten.len()
            + self.tls.cipher.len()
    }

    /// The peer's greeting, once it has arrived.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.peer_greeting().is_none());
    /// ```
    pub fn peer_greeting(&self) -> Option<&Greeting> {
        self.peer_greeting.as_ref()
    }

    /// The `serverName` bound to the session by the first accepted start
    /// request that carried one (RFC 3080 2.3.1.2).
    ///
    /// ```
    /// let s = beep_proto::Session::listener(Default::default());
    /// assert_eq!(s.server_name(), None);
    /// ```
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// True once the session is over (released, refused, or violated).
    /// Send what `poll_transmit` still returns, then close the connection.
    ///
    /// ```
    /// assert!(!beep_proto::Session::initiator(Default::default()).is_ended());
    /// ```
    pub fn is_ended(&self) -> bool {
        self.state.is_ended()
    }

    /// Why the session ended, once it has (the reason
    /// [`Event::SessionEnded`] carries).
    ///
    /// ```
    /// use beep_proto::{Session, SessionEnd};
    /// let mut s = Session::initiator(Default::default());
    /// assert_eq!(s.end_reason(), None);
    /// assert!(s.handle_input(b"junk\r\n").is_err());
    /// assert!(matches!(s.end_reason(), Some(SessionEnd::Violation(_))));
    /// ```
    pub fn end_reason(&self) -> Option<&SessionEnd> {
        match &self.state {
            SessionState::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// True if `channel` is open (channel 0 always is while the session lives).
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.is_channel_open(0));
    /// assert!(!s.is_channel_open(1));
    /// ```
    pub fn is_channel_open(&self, channel: u32) -> bool {
        self.channels
            .get(&channel)
            .is_some_and(|c| c.state.is_open())
    }

    /// The profile URI running on an open channel.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert_eq!(s.channel_profile(1), None);
    /// ```
    pub fn channel_profile(&self, channel: u32) -> Option<&str> {
        self.channels
            .get(&channel)
            .filter(|c| c.state.is_open() && channel != 0)
            .map(|c| c.profile.as_str())
    }

    /// The content the peer piggybacked on its positive reply to our
    /// start request for `channel` (RFC 3080 2.3.1.2), if any.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert_eq!(s.start_reply(1), None);
    /// ```
    pub fn start_reply(&self, channel: u32) -> Option<&bytes::Bytes> {
        self.channels.get(&channel)?.start_reply.as_ref()
    }

    /// The next event, if any.
    ///
    /// With [`Config::auto_credit`], polling a message gives its receive
    /// window back to the peer.
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.poll_event().is_none());
    /// ```
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if self.config.auto_credit {
            match &event {
                Event::Message(m) => self.give_credit(m.channel, m.credit),
                Event::Frame(f) => self.give_credit(f.channel, f.payload.len() as u32),
                _ => {}
            }
        }
        Some(event)
    }

    /// Switches automatic credit (see [`Config::auto_credit`]); the
    /// dispatch core turns it off, giving credit back after handlers ran.
    pub(crate) fn set_auto_credit(&mut self, on: bool) {
        self.config.auto_credit = on;
    }

    /// Gives back `octets` of receive window on `channel` once the
    /// application has processed a message (with `auto_credit` off).
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// s.consumed(1, 100); // unknown channels are ignored
    /// ```
    pub fn consumed(&mut self, channel: u32, octets: u32) {
        self.give_credit(channel, octets);
    }

    /// Changes the receive window of an open channel (LibVortex's
    /// `set_window_size`): how many octets the peer may send ahead of what
    /// the application has consumed. A larger window is advertised at once
    /// with a SEQ frame; a smaller one takes effect as the peer uses the
    /// credit already granted, which is never taken back (RFC 3081 3.1.4).
    /// A channel that is still starting gets it with its first SEQ.
    ///
    /// # Errors
    ///
    /// * [`UsageError::UnknownChannel`]: `channel` is not open (or is 0).
    /// * [`UsageError::InvalidConfig`]: `window` is outside
    ///   4096..=2147483647 (RFC 3081 3.1.1).
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.set_receive_window(1, 1 << 20).is_err()); // no channel 1
    /// ```
    pub fn set_receive_window(&mut self, channel: u32, window: u32) -> Result<(), UsageError> {
        self.ensure_active()?;
        if !(DEFAULT_WINDOW..=MAX_31BIT).contains(&window) {
            return Err(UsageError::InvalidConfig {
                reason: format!(
                    "receive window {window} is outside 4096..=2147483647 (RFC 3081 3.1.1)"
                ),
            });
        }
        if channel == 0 {
            return Err(UsageError::UnknownChannel { channel });
        }
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or(UsageError::UnknownChannel { channel })?;
        // Before the channel runs, its first SEQ (initial_seq) carries it.
        let running = ch.state.may_send();
        if let Some(seq) = ch.recv.resize(channel, window, running) {
            self.seqs_due.add(ch, seq);
        }
        Ok(())
    }

    /// Says whether the reply to our MSG `msgno` on `channel` is awaited:
    /// taken whole by a waiter the moment it is complete. Without
    /// automatic credit, the frames of an unfinished message are credited
    /// only while the application has taken everything before it; an
    /// awaited reply's frames are credited as they come, so a waiter gets
    /// a reply larger than the window even while the application still
    /// holds a message of that channel (such as the MSG whose handler is
    /// the one waiting). The waiter bounds the octets: one message, of at
    /// most `max_message_size`. Unknown MSGs are ignored. (The dispatch
    /// core's requests set it; an embedder that reads replies from events
    /// needs none of this.)
    pub(crate) fn set_reply_awaited(&mut self, channel: u32, msgno: MsgNo, awaited: bool) {
        if let Some(ch) = self.channels.get_mut(&channel)
            && let Some(a) = ch.awaiting.iter_mut().find(|a| a.msgno == msgno)
        {
            a.awaited = awaited;
        }
    }

    /// Delivers each frame of `channel` as [`Event::Frame`] instead of
    /// reassembling messages: for messages larger than memory should hold.
    ///
    /// # Errors
    ///
    /// * [`UsageError::UnknownChannel`]: `channel` is not open.
    /// * [`UsageError::MessageInProgress`]: a message is half received on it.
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.set_streaming(1, true).is_err());
    /// ```
    pub fn set_streaming(&mut self, channel: u32, streaming: bool) -> Result<(), UsageError> {
        let ch = self.open_channel_mut(channel)?;
        if ch.in_progress.is_some() {
            // Half a message reassembled, half streamed would lose data.
            return Err(UsageError::MessageInProgress { channel });
        }
        ch.streaming = streaming;
        Ok(())
    }

    /// True if `channel` delivers frames ([`Session::set_streaming`]).
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert!(!s.is_streaming(1));
    /// ```
    pub fn is_streaming(&self, channel: u32) -> bool {
        self.channels.get(&channel).is_some_and(|ch| ch.streaming)
    }

    /// Asks the peer to start a channel with one of `profiles` (in order of
    /// preference). Returns the channel number; [`Event::ChannelOpened`] or
    /// [`Event::ChannelRefused`] follows.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended;
    ///   [`UsageError::ChannelClosing`] (channel 0): its release was asked for or agreed.
    /// * [`UsageError::NoProfiles`]: `profiles` is empty.
    /// * [`UsageError::InitContentTooLarge`]: piggybacked content above 4096 octets
    ///   (RFC 3080 2.3.1.2).
    /// * [`UsageError::TooManyChannels`]: [`Config::max_channels`] are open or starting.
    ///
    /// ```
    /// use beep_proto::{Session, xml::Profile};
    /// let mut s = Session::initiator(Default::default());
    /// let ch = s.open_channel(vec![Profile::new("http://example.org/p")], Some("host".into())).unwrap();
    /// assert_eq!(ch, 1);
    /// ```
    pub fn open_channel(
        &mut self,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<u32, UsageError> {
        self.ensure_active()?;
        self.ensure_not_tuning()?;
        let number = self.allocate_channel()?;
        self.start_channel(number, profiles, server_name)
    }

    /// Like [`Session::open_channel`], with a channel number of our choice:
    /// it must be of our parity (odd for the initiator, RFC 3080 2.3.1.2) and
    /// not in use.
    ///
    /// # Errors
    ///
    /// As [`Session::open_channel`], and [`UsageError::ChannelNumberUnavailable`]
    /// for 0, a number of the peer's parity, above 2^31-1, or in use.
    ///
    /// ```
    /// use beep_proto::{Session, xml::Profile};
    /// let mut s = Session::initiator(Default::default());
    /// assert_eq!(s.open_channel_number(3, vec![Profile::new("http://example.org/p")], None), Ok(3));
    /// assert!(s.open_channel_number(4, vec![Profile::new("http://example.org/p")], None).is_err());
    /// ```
    pub fn open_channel_number(
        &mut self,
        number: u32,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<u32, UsageError> {
        self.ensure_active()?;
        self.ensure_not_tuning()?;
        self.check_channel_number(number)?;
        self.start_channel(number, profiles, server_name)
    }

    /// Refuses a channel number that is not ours to start: 0, of the
    /// peer's parity (RFC 3080 2.3.1.2), above 2^31-1, or in use.
    fn check_channel_number(&self, number: u32) -> Result<(), UsageError> {
        let parity = if self.role == Role::Initiator { 1 } else { 0 };
        if number == 0
            || number > MAX_31BIT
            || number % 2 != parity
            || self.channels.contains_key(&number)
            || self.pending_starts.contains_key(&number)
        {
            return Err(UsageError::ChannelNumberUnavailable { channel: number });
        }
        Ok(())
    }

    fn start_channel(
        &mut self,
        number: u32,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<u32, UsageError> {
        self.ensure_not_releasing()?;
        if profiles.is_empty() {
            return Err(UsageError::NoProfiles);
        }
        if let Some(p) = profiles.iter().find(|p| {
            p.content
                .as_ref()
                .is_some_and(|c| c.len() > channel_zero::MAX_INIT_CONTENT)
        }) {
            return Err(UsageError::InitContentTooLarge { uri: p.uri.clone() });
        }
        let limit = self.config.max_channels;
        if self.channels.len() + self.pending_starts.len() > limit {
            return Err(UsageError::TooManyChannels { limit });
        }
        let offered = profiles.iter().map(|p| p.uri.clone()).collect();
        let body = channel_zero::start_body(number, server_name, profiles);
        self.channels.insert(number, self.new_channel(number));
        self.request(
            Request::Start {
                channel: number,
                offered,
            },
            body,
        );
        Ok(number)
    }

    /// Accepts the peer's request to start `channel` with `profile`, which
    /// may carry piggybacked reply content. The profile must be one the
    /// peer offered (RFC 3080 2.3.1.2): another is refused with
    /// [`UsageError::ProfileNotOffered`] and the request still awaits an
    /// answer.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingStart`]: no start request for `channel` awaits an answer.
    /// * [`UsageError::ProfileNotOffered`]: `profile` is not one the request offered.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.accept_start(1, beep_proto::xml::Profile::new("x")).is_err());
    /// ```
    pub fn accept_start(&mut self, channel: u32, profile: Profile) -> Result<(), UsageError> {
        self.ensure_active()?;
        if self.is_sasl_start(channel) {
            // The session's own (a SASL exchange): answered by it.
            return Err(UsageError::NoPendingStart { channel });
        }
        let pending = self
            .pending_starts
            .get(&channel)
            .ok_or(UsageError::NoPendingStart { channel })?;
        if !pending.offered.contains(&profile.uri) {
            return Err(UsageError::ProfileNotOffered {
                channel,
                profile: profile.uri,
            });
        }
        let Some(PendingStart {
            msgno, server_name, ..
        }) = self.pending_starts.remove(&channel)
        else {
            return Err(UsageError::NoPendingStart { channel });
        };
        if self.server_name.is_none() {
            self.server_name = server_name;
        }
        let mut ch = self.new_channel(channel);
        ch.state.accepted();
        ch.tls = profile.uri == crate::tls::TLS_URI;
        ch.profile = profile.uri.clone();
        self.channels.insert(channel, ch);
        let body = channel_zero::profile_body(profile);
        self.reply_zero(
            msgno,
            FrameType::Rpy,
            body,
            Some(AfterSend::Activate(channel)),
        );
        Ok(())
    }

    /// Refuses the peer's request to start `channel` (e.g. code 550).
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingStart`]: no start request for `channel` awaits an answer.
    ///
    /// ```
    /// use beep_proto::{Session, reply_code::ReplyCode};
    /// let mut s = Session::listener(Default::default());
    /// assert!(s.deny_start(1, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "no").is_err());
    /// ```
    pub fn deny_start(
        &mut self,
        channel: u32,
        code: ReplyCode,
        text: &str,
    ) -> Result<(), UsageError> {
        self.ensure_active()?;
        if self.is_sasl_start(channel) {
            return Err(UsageError::NoPendingStart { channel });
        }
        let PendingStart { msgno, .. } = self
            .pending_starts
            .remove(&channel)
            .ok_or(UsageError::NoPendingStart { channel })?;
        self.reply_zero(
            msgno,
            FrameType::Err,
            channel_zero::error_body(code, self.diagnostic_lang(text), text),
            None,
        );
        Ok(())
    }

    /// Sends a MSG on an open channel; returns its msgno, which the reply
    /// events will carry.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended;
    ///   [`UsageError::ChannelClosing`]: the channel (or, channel 0, the session) is closing.
    /// * [`UsageError::UnknownChannel`]: `channel` is not open (or is 0).
    /// * [`UsageError::MessageTooLarge`]: above 2^31-1 octets.
    /// * [`UsageError::OutputFull`]: queued output is above [`Config::max_queued_output`].
    /// * [`UsageError::TooManyOutstanding`]: [`Config::max_outstanding`] MSGs await replies.
    ///
    /// ```
    /// let mut s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.send_msg(1, beep_proto::Message::new("x")).is_err());
    /// ```
    pub fn send_msg(&mut self, channel: u32, message: Message) -> Result<MsgNo, UsageError> {
        self.ensure_active()?;
        self.ensure_not_tuning()?;
        check_size(&message)?;
        self.ensure_room()?;
        if self.release_agreed() {
            // We agreed to release the session: nothing new goes out.
            return Err(UsageError::ChannelClosing { channel: 0 });
        }
        if self.is_sasl_channel(channel) {
            return Err(UsageError::SaslChannel { channel });
        }
        let limit = self.config.max_outstanding;
        let ch = self.open_channel_mut(channel)?;
        if channel == 0 {
            return Err(UsageError::UnknownChannel { channel });
        }
        if ch.state.we_close() {
            return Err(UsageError::ChannelClosing { channel });
        }
        if ch.awaiting.len() >= limit {
            return Err(UsageError::TooManyOutstanding { channel, limit });
        }
        let msgno = ch.allocate_msgno();
        ch.awaiting.push_back(Awaiting {
            msgno,
            reply: None,
            awaited: false,
        });
        let out = Outgoing::new(FrameType::Msg, msgno, AnsNo(0), message);
        self.enqueue(channel, out);
        Ok(msgno)
    }

    /// Answers MSG `msgno` with a positive reply.
    ///
    /// Replies go out in the order the MSGs arrived (RFC 3080 2.6.1): one
    /// produced early waits for its turn.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::UnknownChannel`]: `channel` is not open (or is 0).
    /// * [`UsageError::MessageTooLarge`]: above 2^31-1 octets.
    /// * [`UsageError::OutputFull`]: queued output is above [`Config::max_queued_output`].
    /// * [`UsageError::NoSuchRequest`]: no MSG `msgno` awaits a reply on `channel`.
    /// * [`UsageError::ReplyMismatch`]: this MSG's reply has begun with ANS (or is complete).
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.send_rpy(1, beep_proto::MsgNo(0), beep_proto::Message::new("x")).is_err());
    /// ```
    pub fn send_rpy(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        message: Message,
    ) -> Result<(), UsageError> {
        self.reply(channel, msgno, FrameType::Rpy, message)
            .map(drop)
    }

    /// Answers MSG `msgno` with a negative reply.
    ///
    /// # Errors
    ///
    /// As [`Session::send_rpy`].
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.send_err(1, beep_proto::MsgNo(0), beep_proto::Message::new("x")).is_err());
    /// ```
    pub fn send_err(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        message: Message,
    ) -> Result<(), UsageError> {
        self.reply(channel, msgno, FrameType::Err, message)
            .map(drop)
    }

    /// Sends one answer of a one-to-many reply; returns its ansno. End the
    /// reply with [`Session::send_nul`].
    ///
    /// # Errors
    ///
    /// As [`Session::send_rpy`]; [`UsageError::ReplyMismatch`] when the reply
    /// began with RPY or ERR.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.send_ans(1, beep_proto::MsgNo(0), beep_proto::Message::new("x")).is_err());
    /// ```
    pub fn send_ans(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        message: Message,
    ) -> Result<AnsNo, UsageError> {
        self.reply(channel, msgno, FrameType::Ans, message)
    }

    /// Ends a one-to-many reply (RFC 3080 2.1.1).
    ///
    /// # Errors
    ///
    /// As [`Session::send_rpy`], except [`UsageError::OutputFull`]: a NUL is never
    /// refused for room, so a one-to-many reply can always end.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.send_nul(1, beep_proto::MsgNo(0)).is_err());
    /// ```
    pub fn send_nul(&mut self, channel: u32, msgno: MsgNo) -> Result<(), UsageError> {
        self.reply(channel, msgno, FrameType::Nul, Message::default())
            .map(drop)
    }

    /// Asks the peer to close `channel`. The `<close>` goes out once our
    /// MSGs on it are sent and acknowledged (RFC 3080 2.3.1.3); no new MSG may
    /// be sent meanwhile. [`Event::ChannelClosed`] or
    /// [`Event::CloseRefused`] follows.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::ChannelClosing`]: a close of it is already under way, or
    ///   (for another channel than 0) the session's release is.
    /// * [`UsageError::UnknownChannel`]: `channel` is not open.
    ///
    /// ```
    /// use beep_proto::{Session, reply_code::ReplyCode};
    /// let mut s = Session::initiator(Default::default());
    /// assert!(s.close_channel(5, ReplyCode::SUCCESS, "").is_err());
    /// ```
    pub fn close_channel(
        &mut self,
        channel: u32,
        code: ReplyCode,
        text: &str,
    ) -> Result<(), UsageError> {
        self.ensure_active()?;
        if channel != 0 {
            self.ensure_not_releasing()?;
        }
        self.open_channel_mut(channel)?;
        if let Some(msgno) = self.pending_closes.remove(&channel) {
            // The peer already asked: agreeing closes it (and answers them).
            self.close_accepted(channel, msgno);
            return Ok(());
        }
        let ch = self.open_channel_mut(channel)?;
        if ch.state.is_closing() {
            return Err(UsageError::ChannelClosing { channel });
        }
        ch.state.want_close(code.get(), text.to_owned());
        self.mark_closing(channel);
        self.progress_closes();
        Ok(())
    }

    /// Asks the peer to release the whole session (a close of channel 0).
    /// [`Event::SessionEnded`] follows, or [`Event::CloseRefused`] for
    /// channel 0.
    ///
    /// # Errors
    ///
    /// As [`Session::close_channel`] for channel 0.
    ///
    /// ```
    /// use beep_proto::{Session, reply_code::ReplyCode};
    /// let mut s = Session::initiator(Default::default());
    /// s.close_session(ReplyCode::SUCCESS, "").unwrap();
    /// ```
    pub fn close_session(&mut self, code: ReplyCode, text: &str) -> Result<(), UsageError> {
        self.close_channel(0, code, text)
    }

    /// Agrees to the peer's request to close `channel` (0: the session).
    /// The `<ok/>` goes out once the channel is quiet (RFC 3080 2.3.1.3).
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingClose`]: no close request for `channel` awaits an answer.
    ///
    /// ```
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.accept_close(3).is_err());
    /// ```
    pub fn accept_close(&mut self, channel: u32) -> Result<(), UsageError> {
        self.ensure_active()?;
        let msgno = self
            .pending_closes
            .remove(&channel)
            .ok_or(UsageError::NoPendingClose { channel })?;
        self.close_accepted(channel, msgno);
        Ok(())
    }

    /// Refuses the peer's request to close `channel` (RFC 3080 2.3.1.3).
    ///
    /// # Errors
    ///
    /// As [`Session::accept_close`].
    ///
    /// ```
    /// use beep_proto::{Session, reply_code::ReplyCode};
    /// let mut s = Session::listener(Default::default());
    /// assert!(s.deny_close(3, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "busy").is_err());
    /// ```
    pub fn deny_close(
        &mut self,
        channel: u32,
        code: ReplyCode,
        text: &str,
    ) -> Result<(), UsageError> {
        self.ensure_active()?;
        let msgno = self
            .pending_closes
            .remove(&channel)
            .ok_or(UsageError::NoPendingClose { channel })?;
        self.reply_zero(
            msgno,
            FrameType::Err,
            channel_zero::error_body(code, self.diagnostic_lang(text), text),
            None,
        );
        if channel == 0 {
            self.release_refused();
        }
        Ok(())
    }

    /// True while a send would not be refused with
    /// [`UsageError::OutputFull`]: queued output is at most
    /// [`Config::max_queued_output`]. A refused send drops its message, so
    /// a caller that must not lose one asks first (the session is not
    /// shared, so the answer holds until the next call).
    ///
    /// ```
    /// use beep_proto::{Config, Session};
    /// let s = Session::initiator(Config { max_queued_output: 1, ..Config::default() });
    /// assert!(!s.has_room()); // the greeting is queued
    /// ```
    pub fn has_room(&self) -> bool {
        self.queued_output() <= self.config.max_queued_output
    }

    /// Refuses a send while queued output is above
    /// [`Config::max_queued_output`], and remembers to report
    /// [`Event::Writable`] once it has drained.
    fn ensure_room(&mut self) -> Result<(), UsageError> {
        let (queued, limit) = (self.queued_output(), self.config.max_queued_output);
        if queued > limit {
            self.output_blocked = true;
            return Err(UsageError::OutputFull { queued, limit });
        }
        Ok(())
    }

    /// After output left the queue: if a send was refused, and the queue
    /// is now at three quarters of the limit or less, says so once (the
    /// margin keeps a sender from being woken for every frame only to be
    /// refused again).
    ///
    /// Output also leaves with a closed channel: what was fed to its
    /// unfinished messages goes too.
    pub(super) fn note_room(&mut self) {
        if !self.feeds.is_empty() {
            self.forget_closed_feeds();
        }
        let limit = self.config.max_queued_output;
        if self.output_blocked
            && !self.state.is_ended()
            && self.queued_output() <= limit - limit / 4
        {
            self.output_blocked = false;
            self.events.push_back(Event::Writable);
        }
    }

    fn ensure_active(&self) -> Result<(), UsageError> {
        if self.state.is_ended() {
            return Err(UsageError::SessionClosed);
        }
        Ok(())
    }

    fn open_channel_mut(&mut self, channel: u32) -> Result<&mut Channel, UsageError> {
        self.channels
            .get_mut(&channel)
            .filter(|c| c.state.is_open())
            .ok_or(UsageError::UnknownChannel { channel })
    }

    /// The next free channel number of our parity (RFC 3080 2.3.1.2).
    fn allocate_channel(&mut self) -> Result<u32, UsageError> {
        let limit = self.config.max_channels;
        if self.channels.len() + self.pending_starts.len() > limit {
            return Err(UsageError::TooManyChannels { limit });
        }
        loop {
            let number = self.next_channel;
            self.next_channel = match number.checked_add(2) {
                Some(n) if n <= MAX_31BIT => n,
                _ if self.role == Role::Initiator => 1,
                _ => 2,
            };
            if number != 0
                && !self.channels.contains_key(&number)
                && !self.pending_starts.contains_key(&number)
            {
                return Ok(number);
            }
        }
    }

    /// The application is done with `octets` of delivered messages. Once
    /// it has caught up, the held-back credit of unfinished messages goes
    /// too.
    fn give_credit(&mut self, channel: u32, octets: u32) {
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.unconsumed = ch.unconsumed.saturating_sub(u64::from(octets));
            let mut credit = octets;
            if ch.unconsumed == 0 {
                credit = credit.saturating_add(std::mem::take(&mut ch.deferred_credit));
            }
            self.return_window(channel, credit);
        }
    }

    /// True while our unsent channel-0 output (answers to the peer's
    /// requests, mostly) is above [`Config::max_queued_channel0`].
    pub(super) fn channel_zero_backlogged(&self) -> bool {
        self.channels
            .get(&0)
            .is_some_and(|z| z.unsent_octets() > self.config.max_queued_channel0)
    }

    /// Holds back channel-0 credit until the backlog drains.
    pub(super) fn defer_channel_zero_credit(&mut self, octets: u32) {
        if let Some(zero) = self.channels.get_mut(&0) {
            zero.deferred_credit = zero.deferred_credit.saturating_add(octets);
        }
    }

    /// After output left: channel-0 credit held back for a backlog goes
    /// back once the backlog is under the limit again.
    pub(super) fn release_channel_zero_credit(&mut self) {
        let held = self.channels.get(&0).map_or(0, |z| z.deferred_credit);
        if held > 0 && !self.channel_zero_backlogged() {
            if let Some(zero) = self.channels.get_mut(&0) {
                zero.deferred_credit = 0;
            }
            self.return_window(0, held);
        }
    }

    /// Opens `octets` of receive window to the peer: a SEQ becomes due
    /// when worth it (see `RecvWindow::consumed`).
    fn return_window(&mut self, channel: u32, octets: u32) {
        let room = self.window_room(channel);
        if let Some(ch) = self.channels.get_mut(&channel)
            && let Some(seq) = ch.recv.consumed(channel, octets, room)
        {
            self.seqs_due.add(ch, seq);
        }
    }

    /// A channel with the configured window, which may grow by itself up
    /// to `max_receive_window`.
    fn new_channel(&self, number: u32) -> Channel {
        let window = self.config.receive_window;
        Channel::new(number, window, self.config.max_receive_window.max(window))
    }

    /// How much `channel`'s receive window may grow now (see
    /// `RecvWindow::consumed`): what the session's `receive_budget` has
    /// left over the windows of all channels, which bounds what a peer can
    /// make us hold. Counted only when the window may grow, which happens
    /// a few times per channel.
    fn window_room(&self, channel: u32) -> u32 {
        if !self
            .channels
            .get(&channel)
            .is_some_and(|ch| ch.recv.may_grow())
        {
            return 0;
        }
        let windows: u64 = self
            .channels
            .values()
            .map(|ch| u64::from(ch.recv.window()))
            .sum();
        let left = (self.config.receive_budget as u64).saturating_sub(windows);
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    fn reply(
        &mut self,
        channel: u32,
        msgno: MsgNo,
        frame_type: FrameType,
        message: Message,
    ) -> Result<AnsNo, UsageError> {
        self.ensure_active()?;
        check_size(&message)?;
        if channel == 0 {
            return Err(UsageError::UnknownChannel { channel });
        }
        if self.is_sasl_channel(channel) {
            return Err(UsageError::SaslChannel { channel });
        }
        self.open_channel_mut(channel)?;
        // (`queue_reply` refuses a reply above the output limit.)
        self.queue_reply(channel, msgno, frame_type, message, None)
    }
}

fn check_size(message: &Message) -> Result<(), UsageError> {
    let len = message.entity_len();
    if len > MAX_31BIT as usize {
        return Err(UsageError::MessageTooLarge { len });
    }
    Ok(())
}

impl Session {
    /// Queues the greeting (or refusal) as the reply to the peer's implicit
    /// MSG 0 on channel 0.
    fn queue_greeting(&mut self, frame_type: FrameType, body: Vec<u8>) {
        let out = Outgoing::new(frame_type, MsgNo(0), AnsNo(0), Message::beep_xml(body));
        self.enqueue(0, out);
    }

    /// Queues a reply to the peer's channel-0 MSG `msgno`.
    fn reply_zero(
        &mut self,
        msgno: MsgNo,
        frame_type: FrameType,
        body: Vec<u8>,
        after_send: Option<AfterSend>,
    ) {
        // Cannot fail: the slot exists for every request we answer.
        let _ = self.queue_reply(0, msgno, frame_type, Message::beep_xml(body), after_send);
    }

    /// Sends (or defers until the greeting) a channel-0 request.
    fn request(&mut self, request: Request, body: Vec<u8>) {
        if self.state.awaits_greeting() {
            self.deferred.push((request, body));
            return;
        }
        let Some(zero) = self.channels.get_mut(&0) else {
            return;
        };
        let msgno = zero.allocate_msgno();
        zero.awaiting.push_back(Awaiting {
            msgno,
            reply: None,
            awaited: false,
        });
        let after_send = self.after_send_of(&request);
        self.requests.push_back(request);
        let mut out = Outgoing::new(FrameType::Msg, msgno, AnsNo(0), Message::beep_xml(body));
        out.after_send = after_send;
        self.enqueue(0, out);
    }

    fn flush_deferred(&mut self) {
        for (request, body) in std::mem::take(&mut self.deferred) {
            self.request(request, body);
        }
    }
}

/// What the session holds of the peer's input (for diagnostics and
/// tests; TLS takes what follows `<proceed/>` inside the session).
impl Session {
    /// Input received but not yet parsed.
    ///
    /// ```
    /// let s = beep_proto::Session::initiator(Default::default());
    /// assert!(s.unparsed_input().is_empty());
    /// ```
    pub fn unparsed_input(&self) -> &[u8] {
        &self.inbuf
    }
}

#[cfg(test)]
mod tests;

impl Drop for Session {
    /// What this session's unfinished messages held goes back to a shared
    /// budget.
    fn drop(&mut self) {
        if let Some(shared) = &self.shared_reassembly {
            shared.update(self.reassembling, 0);
        }
    }
}
