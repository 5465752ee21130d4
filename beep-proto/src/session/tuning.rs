//! Tuning (RFC 3080 3): the TLS transport security profile run inside
//! the session. `<ready/>` and `<proceed/>` travel piggybacked on a start
//! and its reply (as LibVortex does) or as MSG and RPY on a TLS channel;
//! after `<proceed/>` every channel is gone, the bytes on the wire are TLS
//! records (rustls in memory, see [`crate::tls`]) and both peers greet
//! again over them.
//!
//! Where a negotiation stands is [`Tuning`]:
//!
//! | state            | event                                                   | next             |
//! |------------------|---------------------------------------------------------|------------------|
//! | `None`           | we ask (`start_tls`)                                    | `ReadyQueued`    |
//! | `ReadyQueued`    | our `<ready/>` is written: nothing more is (3.1.3.1)   | `ReadySent`      |
//! | `ReadySent`      | the channel starts without an answer to the piggyback   | `ReadyQueued` (`<ready/>` as a MSG) |
//! | `ReadySent`      | `<proceed/>`: the reset, TLS begins (3.1.3.2)          | `None`, TLS on   |
//! | `ReadySent`      | `<error>` (or the start refused): `TlsRefused`          | `None`           |
//! | `None`           | the peer's `<ready/>` (`TlsRequested`)                  | `ReadyReceived`  |
//! | `ReadyReceived`  | `deny_tls`                                              | `None`           |
//! | `ReadyReceived`  | `accept_tls`: our `<proceed/>` queued                   | `Proceeding`     |
//! | `Proceeding`     | `<proceed/>` written: the reset, TLS begins            | `None`, TLS on   |
//!
//! While a negotiation is under way no channel and no MSG of ours may
//! start ([`UsageError::TuningInProgress`]); replies still go out (the
//! peer's pending requests are answered before its `<ready/>` is, RFC
//! 3080 3.1.3.1).

use bytes::{Bytes, BytesMut};

use super::channel_zero::{self, Request};
use super::{PendingStart, Session, SessionState};
use crate::channel::{AfterSend, Awaiting, Outgoing};
use crate::error::{ProtocolError, UsageError};
use crate::event::{Event, MessageKind, SessionEnd, TlsRequest};
use crate::frame::FrameType;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::sasl::Mechanism;
use crate::tls::{TLS_URI, TlsClient, TlsError, TlsInfo, TlsLayer, TlsServer};
use crate::xml::{ErrorElement, Profile, Start, TlsElement};

/// Where a TLS negotiation stands (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tuning {
    None,
    /// Our `<ready/>` on `channel` is queued.
    ReadyQueued {
        channel: u32,
    },
    /// Our `<ready/>` is out; we send nothing until its answer.
    ReadySent {
        channel: u32,
    },
    /// The peer's `<ready/>` awaits the application's answer.
    ReadyReceived {
        channel: u32,
        via: Via,
    },
    /// Our `<proceed/>` is queued; TLS begins once it is written.
    Proceeding,
}

/// How the peer's `<ready/>` came, so that the answer goes the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// Piggybacked on its start request (channel-0 MSG `msgno`).
    Start(MsgNo),
    /// As MSG `msgno` on the TLS channel.
    Msg(MsgNo),
}

/// What TLS adds to a session: the rustls layer once `<proceed/>` has
/// passed, the configuration waiting for it, and the buffers of the
/// encrypted byte path.
#[derive(Debug, Default)]
pub(super) struct TlsState {
    pub(super) layer: Option<Box<TlsLayer>>,
    pub(super) info: Option<TlsInfo>,
    /// Ours, from `start_tls`, until the `<proceed/>` arrives.
    pub(super) client: Option<Box<TlsClient>>,
    /// Ours, from `accept_tls`, until our `<proceed/>` is written.
    pub(super) server: Option<Box<TlsServer>>,
    /// Ciphertext not handed out yet.
    pub(super) cipher: BytesMut,
    /// Input received past `<proceed/>` in the same read: the first TLS
    /// bytes, to be decrypted.
    pub(super) early_input: BytesMut,
    /// Plaintext pieces of one transmit, large payloads as slices of the
    /// application's buffers (reused): rustls copies them once, into its
    /// records, and no copy into `out` comes first.
    pub(super) chunks: Vec<Bytes>,
}

impl Session {
    /// Asks the peer to begin TLS (RFC 3080 3.1) with `client`'s
    /// configuration: `<ready/>` goes piggybacked on a start of the TLS
    /// profile (or as a MSG on a TLS channel already open). Nothing more
    /// is written until the peer answers (RFC 3080 3.1.3.1);
    /// [`Event::TuningReset`] and then [`Event::TlsActive`] follow, or
    /// [`Event::TlsRefused`], or the session ends with
    /// [`SessionEnd::TlsFailed`]. Returns the TLS channel's number.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`], [`UsageError::ChannelClosing`]:
    ///   the session has ended or is being released.
    /// * [`UsageError::TuningNotPossible`]: TLS is active already, the
    ///   peer's greeting does not offer it, or channels are open (TLS is
    ///   an initial tuning: it closes every channel, RFC 3080 3).
    /// * [`UsageError::TuningInProgress`]: a negotiation is under way.
    /// * [`UsageError::TuningNotPossible`] too once SASL authentication
    ///   succeeded: RFC 3080 4.1, no transport security begins after it.
    ///
    /// ```
    /// use beep_proto::{Session, tls::TlsClient};
    /// let mut s = Session::initiator(Default::default());
    /// let client = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    /// assert_eq!(s.start_tls(client), Ok(1));
    /// ```
    pub fn start_tls(&mut self, client: TlsClient) -> Result<u32, UsageError> {
        self.ensure_active()?;
        self.ensure_not_releasing()?;
        if self.tls.layer.is_some() {
            return Err(UsageError::TuningNotPossible {
                reason: "TLS is active already",
            });
        }
        if self.sasl.is_authenticated() {
            return Err(UsageError::TuningNotPossible {
                reason: "SASL authentication succeeded: TLS may not begin (RFC 3080 4.1)",
            });
        }
        if self.tuning != Tuning::None {
            return Err(UsageError::TuningInProgress);
        }
        if self
            .peer_greeting
            .as_ref()
            .is_some_and(|g| !g.profiles.iter().any(|p| p == TLS_URI))
        {
            return Err(UsageError::TuningNotPossible {
                reason: "the peer does not offer TLS",
            });
        }
        let tls_channel = self
            .channels
            .values()
            .find(|ch| ch.tls && ch.state.may_send())
            .map(|ch| ch.number);
        let others = self.channels.values().any(|ch| ch.number != 0 && !ch.tls)
            || !self.pending_starts.is_empty();
        if others {
            return Err(UsageError::TuningNotPossible {
                reason: "channels are open: TLS is an initial tuning and closes them all",
            });
        }
        let server_name = client.server_name();
        self.tls.client = Some(Box::new(client));
        let channel = match tls_channel {
            Some(channel) => {
                self.send_ready_msg(channel);
                channel
            }
            None => {
                let channel = self.allocate_channel()?;
                self.tuning = Tuning::ReadyQueued { channel };
                let profile = Profile::new(TLS_URI)
                    .with_content(piggyback(TlsElement::Ready { version: None }));
                let bound = self.server_name.is_some();
                self.start_channel(channel, vec![profile], (!bound).then_some(server_name))?;
                channel
            }
        };
        Ok(channel)
    }

    /// Our `<ready/>` as a MSG on the TLS channel.
    fn send_ready_msg(&mut self, channel: u32) {
        self.tuning = Tuning::ReadyQueued { channel };
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let msgno = ch.allocate_msgno();
        ch.awaiting.push_back(Awaiting {
            msgno,
            reply: None,
            awaited: false,
        });
        let body = TlsElement::Ready { version: None }.to_vec();
        let mut out = Outgoing::new(FrameType::Msg, msgno, AnsNo(0), Message::beep_xml(body));
        out.after_send = Some(AfterSend::ReadyWritten);
        self.enqueue(channel, out);
    }

    /// Agrees to the peer's TLS request on `channel`
    /// ([`Event::TlsRequested`]) with `server`'s certificate: `<proceed/>`
    /// goes out, then every channel is gone and the handshake runs (RFC
    /// 3080 3.1.3.2).
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingTls`]: no TLS request awaits an answer on
    ///   `channel`.
    /// * [`UsageError::TuningNotPossible`]: replies to the peer's earlier
    ///   MSGs are still owed; they go first (RFC 3080 3.1.3.1). Answer
    ///   them, then accept, or deny.
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// let mut s = beep_proto::Session::listener(Default::default());
    /// assert!(s.accept_tls(1, &server).is_err()); // nobody asked
    /// ```
    pub fn accept_tls(&mut self, channel: u32, server: &TlsServer) -> Result<(), UsageError> {
        self.ensure_active()?;
        let via = self.pending_tls(channel)?;
        // The peer's MSGs on data channels still awaiting a reply (its
        // channel-0 requests are answered in order before our <proceed/>
        // anyway, RFC 3080 2.6.1); the <ready/> MSG itself excepted.
        let waiting: usize = self
            .channels
            .values()
            .filter(|ch| ch.number != 0)
            .map(|ch| ch.slots.len())
            .sum();
        let owed = waiting - usize::from(matches!(via, Via::Msg(_)));
        if owed > 0 {
            return Err(UsageError::TuningNotPossible {
                reason: "replies to the peer's messages are still owed (RFC 3080 3.1.3.1)",
            });
        }
        self.tls.server = Some(Box::new(server.clone()));
        self.tuning = Tuning::Proceeding;
        match via {
            Via::Start(msgno) => {
                let pending = self.pending_starts.remove(&channel);
                if self.server_name.is_none() {
                    self.server_name = pending.and_then(|p| p.server_name);
                }
                let mut ch = self.new_channel(channel);
                ch.state.accepted();
                ch.profile = TLS_URI.to_owned();
                ch.tls = true;
                self.channels.insert(channel, ch);
                // Exactly `<proceed />`: LibVortex compares the content
                // literally (conformance item 67).
                let profile = Profile::new(TLS_URI).with_content(piggyback(TlsElement::Proceed));
                let body = channel_zero::profile_body(profile);
                self.reply_zero(msgno, FrameType::Rpy, body, Some(AfterSend::Proceed));
            }
            Via::Msg(msgno) => {
                let message = Message::beep_xml(TlsElement::Proceed.to_vec());
                let proceeding = Some(AfterSend::Proceed);
                // The slot exists: the MSG awaits this very reply.
                let _ = self.queue_reply(channel, msgno, FrameType::Rpy, message, proceeding);
            }
        }
        Ok(())
    }

    /// Refuses the peer's TLS request on `channel` with an `<error>`; the
    /// session goes on in plain.
    ///
    /// # Errors
    ///
    /// As [`Session::accept_tls`], except for owed replies.
    ///
    /// ```
    /// use beep_proto::{Session, ReplyCode};
    /// let mut s = Session::listener(Default::default());
    /// assert!(s.deny_tls(1, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "no").is_err());
    /// ```
    pub fn deny_tls(
        &mut self,
        channel: u32,
        code: ReplyCode,
        text: &str,
    ) -> Result<(), UsageError> {
        self.ensure_active()?;
        let via = self.pending_tls(channel)?;
        self.tuning = Tuning::None;
        match via {
            Via::Start(_) => self.deny_start(channel, code, text),
            Via::Msg(msgno) => {
                let error = ErrorElement {
                    code,
                    lang: self.diagnostic_lang(text),
                    text: text.to_owned(),
                };
                let message = Message::beep_xml(TlsElement::Error(error).to_vec());
                self.queue_reply(channel, msgno, FrameType::Err, message, None)
                    .map(drop)
            }
        }
    }

    fn pending_tls(&self, channel: u32) -> Result<Via, UsageError> {
        match self.tuning {
            Tuning::ReadyReceived { channel: c, via } if c == channel => Ok(via),
            _ => Err(UsageError::NoPendingTls { channel }),
        }
    }

    /// True once TLS protects the session (its handshake may still be
    /// running: nothing goes out unencrypted from `<proceed/>` on).
    ///
    /// ```
    /// assert!(!beep_proto::Session::initiator(Default::default()).is_tls_active());
    /// ```
    pub fn is_tls_active(&self) -> bool {
        self.tls.layer.is_some()
    }

    /// The peer's certificates, the TLS version and cipher suite, once
    /// the handshake is over.
    ///
    /// ```
    /// assert!(beep_proto::Session::listener(Default::default()).tls_info().is_none());
    /// ```
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.info.as_ref()
    }

    /// Refuses new channels and MSGs of ours while a negotiation is under
    /// way.
    #[inline]
    pub(super) fn ensure_not_tuning(&self) -> Result<(), UsageError> {
        if self.tuning != Tuning::None {
            return Err(UsageError::TuningInProgress);
        }
        Ok(())
    }

    /// The `tls-exporter` channel binding of the session's TLS, once TLS
    /// 1.3 is active (what SCRAM-SHA-256-PLUS binds to).
    pub(super) fn channel_binding(&self) -> Option<[u8; 32]> {
        self.tls.layer.as_ref()?.channel_binding()
    }

    /// The profiles our greeting advertises: with TLS active, the
    /// configured ones but TLS itself, and those offered only over TLS
    /// (RFC 3080 3: a different greeting after privacy); before, all
    /// configured ones, or only TLS when the session requires it.
    ///
    /// Profiles open only to an authenticated peer
    /// ([`Config::auth_profiles`](crate::Config::auth_profiles)) are
    /// advertised with the others: no greeting follows SASL (see
    /// `session/sasl.rs`). Mechanisms that bind to TLS
    /// (SCRAM-SHA-256-PLUS) are advertised only over TLS.
    pub(super) fn advertised_profiles(&self) -> Vec<String> {
        let config = &self.config;
        let mut profiles: Vec<String> = if self.tls.layer.is_some() {
            let plain = config.profiles.iter().filter(|p| *p != TLS_URI);
            plain.chain(&config.tls_profiles).cloned().collect()
        } else if config.require_tls {
            return vec![TLS_URI.to_owned()];
        } else {
            let binds =
                |uri: &str| Mechanism::from_uri(uri).is_some_and(|m| m.needs_channel_binding());
            config
                .profiles
                .iter()
                .filter(|p| !binds(p))
                .cloned()
                .collect()
        };
        for uri in &config.auth_profiles {
            if !profiles.contains(uri) {
                profiles.push(uri.clone());
            }
        }
        profiles
    }

    /// True if we offer TLS now: not once it is active, nor once SASL
    /// authentication succeeded (RFC 3080 4.1).
    fn offers_tls(&self) -> bool {
        self.tls.layer.is_none()
            && !self.sasl.is_authenticated()
            && self.config.profiles.iter().any(|p| p == TLS_URI)
    }

    /// Looks at a peer's start request before the application does:
    /// profiles that need TLS are taken out of it before TLS (refused
    /// with 538 when nothing is left), TLS itself once it is active, and
    /// a `<ready/>` piggybacked on a start of TLS becomes
    /// [`Event::TlsRequested`]. Returns true when the request was
    /// answered or taken here.
    pub(super) fn screen_start(&mut self, msgno: MsgNo, start: &mut Start) -> bool {
        if self.tls.layer.is_none() {
            let config = &self.config;
            let needs_tls = |uri: &str| {
                uri != TLS_URI
                    && (config.require_tls || config.tls_profiles.iter().any(|p| p == uri))
            };
            if start.profiles.iter().any(|p| needs_tls(&p.uri)) {
                start.profiles.retain(|p| !needs_tls(&p.uri));
                if start.profiles.is_empty() {
                    let text = "this profile is offered only over TLS (RFC 3080 3.1)";
                    self.refuse(msgno, ReplyCode::MECHANISM_REQUIRES_ENCRYPTION, text);
                    return true;
                }
            }
        } else if start.profiles.iter().any(|p| p.uri == TLS_URI) {
            start.profiles.retain(|p| p.uri != TLS_URI);
            if start.profiles.is_empty() {
                let text = "TLS is active already";
                self.refuse(msgno, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, text);
                return true;
            }
        }
        // RFC 3080 4.1: once SASL succeeded, no transport security
        // begins (and none while an exchange runs: its channel would go).
        let sasl = if self.sasl.is_authenticated() {
            Some("SASL authentication succeeded: TLS may not begin (RFC 3080 4.1)")
        } else if self.sasl.in_progress() {
            Some("an authentication is under way")
        } else {
            None
        };
        if let Some(text) = sasl
            && start.profiles.iter().any(|p| p.uri == TLS_URI)
        {
            start.profiles.retain(|p| p.uri != TLS_URI);
            if start.profiles.is_empty() {
                self.refuse(msgno, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, text);
                return true;
            }
        }
        if !self.offers_tls() {
            return false;
        }
        let Some(content) = start
            .profiles
            .iter()
            .find(|p| p.uri == TLS_URI)
            .and_then(|p| p.content.clone())
        else {
            return false;
        };
        let version = match TlsElement::parse(&content) {
            Ok(TlsElement::Ready { version }) => version,
            _ => {
                let text = "the TLS profile's content must be <ready/> (RFC 3080 3.1.1)";
                self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
                return true;
            }
        };
        if self.tuning != Tuning::None {
            let text = "a tuning is under way";
            self.refuse(msgno, ReplyCode::ACTION_NOT_TAKEN, text);
            return true;
        }
        let channel = start.number;
        let server_name = start
            .server_name
            .clone()
            .or_else(|| self.server_name.clone());
        self.pending_starts.insert(
            channel,
            PendingStart {
                msgno,
                server_name: start.server_name.clone(),
                offered: vec![TLS_URI.to_owned()],
            },
        );
        self.tuning = Tuning::ReadyReceived {
            channel,
            via: Via::Start(msgno),
        };
        self.events.push_back(Event::TlsRequested(TlsRequest {
            channel,
            server_name,
            version,
        }));
        true
    }

    /// Our start of the TLS channel was answered with `profile`. Returns
    /// true when the answer was ours to take (the channel is the one our
    /// `<ready/>` rode on).
    pub(super) fn tls_start_answered(
        &mut self,
        channel: u32,
        profile: &Profile,
    ) -> Result<bool, ProtocolError> {
        if !matches!(self.tuning, Tuning::ReadySent { channel: c } | Tuning::ReadyQueued { channel: c } if c == channel)
        {
            return Ok(false);
        }
        match &profile.content {
            // The peer started the channel and ignored the piggyback:
            // ask again on it.
            None => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.state.started();
                    ch.profile = TLS_URI.to_owned();
                    ch.tls = true;
                }
                self.hold = false;
                self.send_ready_msg(channel);
                Ok(true)
            }
            Some(content) => {
                self.on_tls_answer(channel, MessageKind::Rpy, content)?;
                if self.tls.layer.is_none()
                    && let Some(ch) = self.channels.get_mut(&channel)
                {
                    // Refused inside a channel that did start (RFC 3080
                    // 3.1.1): it stays open as a TLS channel.
                    ch.state.started();
                    ch.profile = TLS_URI.to_owned();
                    ch.tls = true;
                }
                Ok(true)
            }
        }
    }

    /// Our start of the TLS channel was refused.
    pub(super) fn tls_start_refused(&mut self, channel: u32, error: &ErrorElement) {
        if matches!(self.tuning, Tuning::ReadySent { channel: c } | Tuning::ReadyQueued { channel: c } if c == channel)
        {
            self.tls_refused(channel, error.clone());
        }
    }

    fn tls_refused(&mut self, channel: u32, error: ErrorElement) {
        self.tuning = Tuning::None;
        self.hold = false;
        self.tls.client = None;
        self.events.push_back(Event::TlsRefused { channel, error });
    }

    /// A complete message on a TLS channel: the peer's `<ready/>`, or its
    /// answer to ours. Never shown to the application as a message.
    pub(super) fn on_tls_message(
        &mut self,
        channel: u32,
        kind: MessageKind,
        msgno: MsgNo,
        message: &Message,
        credit: u32,
    ) -> Result<(), ProtocolError> {
        self.give_credit(channel, credit);
        match kind {
            MessageKind::Msg => {
                let refuse = |s: &mut Self, code: ReplyCode, text: &str| {
                    let error = ErrorElement::new(code, text);
                    let body = TlsElement::Error(error).to_vec();
                    let _ = s.queue_reply(
                        channel,
                        msgno,
                        FrameType::Err,
                        Message::beep_xml(body),
                        None,
                    );
                };
                match TlsElement::parse(message.body()) {
                    Ok(TlsElement::Ready { version }) if self.offers_tls() => {
                        if self.tuning != Tuning::None {
                            refuse(self, ReplyCode::ACTION_NOT_TAKEN, "a tuning is under way");
                            return Ok(());
                        }
                        self.tuning = Tuning::ReadyReceived {
                            channel,
                            via: Via::Msg(msgno),
                        };
                        self.events.push_back(Event::TlsRequested(TlsRequest {
                            channel,
                            server_name: self.server_name.clone(),
                            version,
                        }));
                    }
                    Ok(TlsElement::Ready { .. }) => {
                        refuse(
                            self,
                            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                            "TLS is not offered",
                        );
                    }
                    _ => refuse(
                        self,
                        ReplyCode::GENERAL_SYNTAX_ERROR,
                        "<ready/> expected on the TLS channel (RFC 3080 3.1.2)",
                    ),
                }
                Ok(())
            }
            MessageKind::Rpy | MessageKind::Err => {
                if !matches!(self.tuning, Tuning::ReadySent { channel: c } | Tuning::ReadyQueued { channel: c } if c == channel)
                {
                    return Ok(());
                }
                self.on_tls_answer(channel, kind, message.body())
            }
            MessageKind::Ans { .. } | MessageKind::Nul => Err(ProtocolError::Tls(
                TlsError::Protocol("ANS or NUL on the TLS channel".into()),
            )),
        }
    }

    /// The peer's answer to our `<ready/>`.
    fn on_tls_answer(
        &mut self,
        channel: u32,
        kind: MessageKind,
        body: &[u8],
    ) -> Result<(), ProtocolError> {
        match (kind, TlsElement::parse(body)) {
            (MessageKind::Rpy, Ok(TlsElement::Proceed)) => {
                let Some(client) = self.tls.client.take() else {
                    return Ok(());
                };
                match TlsLayer::client(&client) {
                    Ok(layer) => self.begin_tls(layer),
                    Err(e) => self.end(SessionEnd::TlsFailed(e)),
                }
                Ok(())
            }
            (_, Ok(TlsElement::Error(error))) => {
                self.tls_refused(channel, error);
                Ok(())
            }
            (_, other) => Err(ProtocolError::Tls(TlsError::Protocol(format!(
                "answer to <ready/> is neither <proceed/> nor <error>: {other:?}"
            )))),
        }
    }

    /// Our `<proceed/>` is written: the listener's side of the switch.
    pub(super) fn proceed_written(&mut self) {
        let Some(server) = self.tls.server.take() else {
            return;
        };
        match TlsLayer::server(&server) {
            Ok(layer) => self.begin_tls(layer),
            Err(e) => self.end(SessionEnd::TlsFailed(e)),
        }
    }

    /// Our `<ready/>` is written: nothing more goes out until its answer
    /// (RFC 3080 3.1.3.1).
    pub(super) fn ready_written(&mut self) {
        if let Tuning::ReadyQueued { channel } = self.tuning {
            self.tuning = Tuning::ReadySent { channel };
            self.hold = true;
        }
    }

    /// The tuning reset (RFC 3080 3, 3.1.3.2): every channel, channel 0
    /// included, is closed without a word, the session starts over with
    /// new greetings, and from now on bytes go through `layer`. What was
    /// read past `<proceed/>` is the first TLS input; what was written up
    /// to it stays plain and goes first.
    fn begin_tls(&mut self, layer: TlsLayer) {
        let early = self.inbuf.split();
        let fresh = Session::bare(self.role, self.config.clone());
        let mut old = std::mem::replace(self, fresh);
        // Carried over: what is still to be reported and written, the
        // serverName bound to the session, the shared budget (without
        // what the old channels held), the blocked sender's wake-up.
        std::mem::swap(&mut self.events, &mut old.events);
        // What was framed up to <proceed/> goes out plain, first.
        self.unwritten = if old.out.is_empty() {
            std::mem::take(&mut old.unwritten)
        } else if old.unwritten.is_empty() {
            old.out.split().freeze()
        } else {
            [&old.unwritten[..], &old.out[..]].concat().into()
        };
        self.server_name = old.server_name.take();
        self.output_blocked = old.output_blocked;
        if let Some(shared) = old.shared_reassembly.take() {
            shared.update(old.reassembling, 0);
            self.shared_reassembly = Some(shared);
        }
        self.tls.layer = Some(Box::new(layer));
        self.tls.early_input = early;
        self.switched = true;
        self.events.push_back(Event::TuningReset);
        let greeting = channel_zero::greeting_body(self.advertised_profiles(), &self.config);
        self.queue_greeting(FrameType::Rpy, greeting);
        self.note_room();
    }

    /// Input once TLS is on: decrypted, then parsed as BEEP.
    pub(super) fn handle_tls_input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let Some(layer) = self.tls.layer.as_mut() else {
            return Ok(());
        };
        // Decrypted straight behind what is buffered: the plaintext is
        // copied once, out of rustls.
        let before = self.inbuf.len();
        let decrypted = layer.decrypt(data, &mut self.inbuf);
        let active = layer.newly_active();
        if let Some(info) = active {
            self.tls.info = Some(info.clone());
            self.events.push_back(Event::TlsActive(info));
        }
        match decrypted {
            Ok(_) if self.inbuf.len() == before => Ok(()),
            Ok(_) => self.parse_buffered(),
            Err(e) => {
                self.end(SessionEnd::TlsFailed(e.clone()));
                self.inbuf = BytesMut::new();
                self.reading = None;
                Err(ProtocolError::Tls(e))
            }
        }
    }

    /// After input parsed in plain: the bytes read past a `<proceed/>`
    /// that just arrived are TLS.
    pub(super) fn after_plain_input(&mut self) -> Result<(), ProtocolError> {
        if self.tls.early_input.is_empty() {
            return Ok(());
        }
        let early = self.tls.early_input.split();
        self.handle_tls_input(&early)
    }

    /// Output once TLS is on: the frames due, encrypted, with what rustls
    /// has to say itself (its handshake, alerts).
    pub(super) fn transmit_tls(&mut self) -> Option<Bytes> {
        // What the switch cut short goes now, encrypted.
        self.switched = false;
        let tls_failed = matches!(self.state, SessionState::Ended(SessionEnd::TlsFailed(_)));
        let mut chunks = std::mem::take(&mut self.tls.chunks);
        if !tls_failed {
            self.transmit(Some(&mut chunks));
        }
        let layer = self.tls.layer.as_mut()?;
        // In order: `out` was flushed into the chunks before each payload
        // slice, so what it holds now comes after them. One call, so that
        // records span frame headers and payloads.
        if !chunks.is_empty() || !self.out.is_empty() {
            let mut pieces: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            pieces.push(&self.out);
            layer.encrypt_vectored(&pieces);
        }
        chunks.clear();
        self.tls.chunks = chunks;
        self.out.clear();
        layer.take_ciphertext(&mut self.tls.cipher);
        (!self.tls.cipher.is_empty()).then(|| self.tls.cipher.split().freeze())
    }

    /// True while rustls has something to send.
    #[inline]
    pub(super) fn tls_wants_write(&self) -> bool {
        self.tls.layer.as_ref().is_some_and(|l| l.wants_write())
    }

    /// The transport ended during the TLS handshake: a typed end.
    pub(super) fn eof_in_handshake(&mut self) -> bool {
        if self.tls.layer.as_ref().is_some_and(|l| l.is_handshaking()) {
            self.end(SessionEnd::TlsFailed(TlsError::ClosedDuringHandshake));
            return true;
        }
        false
    }

    /// A channel-0 request we send: our TLS start, once written, silences
    /// us until its answer.
    pub(super) fn after_send_of(&self, request: &Request) -> Option<AfterSend> {
        match (request, self.tuning) {
            (Request::Start { channel, .. }, Tuning::ReadyQueued { channel: c })
                if *channel == c =>
            {
                Some(AfterSend::ReadyWritten)
            }
            _ => None,
        }
    }
}

/// A TLS element as piggybacked profile content: without the line end,
/// which would make the writer choose base64 (LibVortex sends and
/// expects `<ready />` and `<proceed />` as they are).
fn piggyback(element: TlsElement) -> Vec<u8> {
    let mut content = element.to_vec();
    content.truncate(content.len().saturating_sub(2));
    content
}
