//! Channel management on channel 0 (RFC 3080 2.3): greetings, start,
//! close, ok and error, in both directions.

use super::{PendingStart, Role, Session};
use crate::config::Config;
use crate::error::ProtocolError;
use crate::event::{Event, MessageKind, SessionEnd, StartRequest};
use crate::frame::FrameType;
use crate::mime::Message;
use crate::numbers::MsgNo;
use crate::reply_code::ReplyCode;
use crate::xml::{ChannelZeroMessage, Close, ErrorElement, Greeting, Profile, Start};

/// Largest piggybacked initialization content (RFC 3080 2.3.1.2, RFC 3080 2.3.1.2).
pub(crate) const MAX_INIT_CONTENT: usize = 4096;

/// What one of our channel-0 MSGs asked for, to make sense of its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    /// The implicit request that the peer's greeting answers.
    Greeting,
    Start {
        channel: u32,
        offered: Vec<String>,
    },
    Close {
        channel: u32,
    },
}

fn body(message: ChannelZeroMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    message.write(&mut out);
    out
}

pub(super) fn greeting_body(profiles: Vec<String>, config: &Config) -> Vec<u8> {
    body(ChannelZeroMessage::Greeting(Greeting {
        profiles,
        features: config.features.clone(),
        localize: config.localize.clone(),
    }))
}

pub(super) fn error_body(code: ReplyCode, lang: Option<String>, text: &str) -> Vec<u8> {
    body(ChannelZeroMessage::Error(ErrorElement {
        code,
        lang,
        text: text.to_owned(),
    }))
}

pub(super) fn start_body(
    number: u32,
    server_name: Option<String>,
    profiles: Vec<Profile>,
) -> Vec<u8> {
    body(ChannelZeroMessage::Start(Start {
        number,
        server_name,
        profiles,
    }))
}

pub(super) fn profile_body(profile: Profile) -> Vec<u8> {
    body(ChannelZeroMessage::Profile(profile))
}

pub(super) fn ok_body() -> Vec<u8> {
    body(ChannelZeroMessage::Ok)
}

pub(super) fn close_body(number: u32, code: u16, lang: Option<String>, text: &str) -> Vec<u8> {
    body(ChannelZeroMessage::Close(Close {
        number,
        code: ReplyCode::new(code).unwrap_or(ReplyCode::SUCCESS),
        lang,
        text: text.to_owned(),
    }))
}

/// Longest diagnostic text we send in an `<error>` to a peer's request.
const MAX_DIAGNOSTIC: usize = 200;

/// `text` cut to [`MAX_DIAGNOSTIC`] octets at a character boundary.
fn bounded_diagnostic(text: &str) -> &str {
    if text.len() <= MAX_DIAGNOSTIC {
        return text;
    }
    let mut end = MAX_DIAGNOSTIC;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn bad_reply(reason: String) -> ProtocolError {
    ProtocolError::BadChannelZeroReply { reason }
}

impl Session {
    /// A complete message on channel 0.
    pub(super) fn on_channel_zero(
        &mut self,
        kind: MessageKind,
        msgno: MsgNo,
        message: Message,
    ) -> Result<(), ProtocolError> {
        match kind {
            MessageKind::Msg => {
                self.on_zero_request(msgno, message.body());
                Ok(())
            }
            MessageKind::Rpy | MessageKind::Err => self.on_zero_reply(kind, message.body()),
            MessageKind::Ans { .. } | MessageKind::Nul => {
                Err(bad_reply("ANS and NUL are not used on channel 0".into()))
            }
        }
    }

    /// A MSG from the peer: a request we must answer, with an `<error>` if
    /// it is malformed or unexpected (RFC 3080 2.2.2.1, RFC 3080 2.3.1.3).
    fn on_zero_request(&mut self, msgno: MsgNo, body: &[u8]) {
        match ChannelZeroMessage::parse(body) {
            Ok(ChannelZeroMessage::Start(start)) => self.on_start(msgno, start),
            Ok(ChannelZeroMessage::Close(close)) => self.on_close(msgno, close),
            Ok(other) => self.refuse(
                msgno,
                ReplyCode::GENERAL_SYNTAX_ERROR,
                &format!("unexpected request on channel 0: {}", element_name(&other)),
            ),
            Err(e) => self.refuse(msgno, ReplyCode::GENERAL_SYNTAX_ERROR, &e.to_string()),
        }
    }

    pub(super) fn refuse(&mut self, msgno: MsgNo, code: ReplyCode, text: &str) {
        // Diagnostics may quote the peer (a parse error names the bad
        // value): never at length, or each small request would buy a large
        // answer.
        let text = bounded_diagnostic(text);
        let body = error_body(code, self.diagnostic_lang(text), text);
        self.reply_zero(msgno, FrameType::Err, body, None);
    }

    /// The `xml:lang` for a diagnostic: omitted when there is no text, or
    /// when its language is the peer's first `localize` choice (RFC 3080 2.3.1.3).
    pub(super) fn diagnostic_lang(&self, text: &str) -> Option<String> {
        const DEFAULT: &str = "i-default";
        let ours = self
            .config
            .diagnostic_language
            .as_deref()
            .unwrap_or(DEFAULT);
        let theirs = self
            .peer_greeting
            .as_ref()
            .and_then(|g| g.localize.as_deref())
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or(DEFAULT);
        (!text.is_empty() && !ours.eq_ignore_ascii_case(theirs)).then(|| ours.to_owned())
    }

    fn on_start(&mut self, msgno: MsgNo, mut start: Start) {
        let number = start.number;
        let peer_parity = if self.role == Role::Listener { 1 } else { 0 };
        if number % 2 != peer_parity {
            let text = "channel number of the wrong parity (RFC 3080 2.3.1.2)";
            return self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
        }
        if start.profiles.len() > self.config.max_start_profiles {
            let text = "too many profiles offered in one start request";
            return self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
        }
        if self.pending_starts.len() >= self.config.max_pending_starts {
            let text = "too many start requests awaiting an answer";
            return self.refuse(msgno, ReplyCode::SERVICE_NOT_AVAILABLE, text);
        }
        if start.profiles.iter().any(|p| {
            p.content
                .as_ref()
                .is_some_and(|c| c.len() > MAX_INIT_CONTENT)
        }) {
            let text = "profile initialization content longer than 4K octets (RFC 3080 2.3.1.2)";
            return self.refuse(msgno, ReplyCode::PARAMETER_INVALID, text);
        }
        if self.channels.contains_key(&number) || self.pending_starts.contains_key(&number) {
            return self.refuse(
                msgno,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "channel already in use",
            );
        }
        if self.channels.len() - 1 + self.pending_starts.len() >= self.config.max_channels {
            return self.refuse(msgno, ReplyCode::SERVICE_NOT_AVAILABLE, "too many channels");
        }
        if self.closing.contains(&0) {
            return self.refuse(
                msgno,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "session is closing",
            );
        }
        if self.screen_start(msgno, &mut start) || self.screen_sasl_start(msgno, &mut start) {
            return;
        }
        let offered = start.profiles.iter().map(|p| p.uri.clone()).collect();
        self.pending_starts.insert(
            number,
            PendingStart {
                msgno,
                server_name: start.server_name.clone(),
                offered,
            },
        );
        self.events.push_back(Event::StartRequested(StartRequest {
            channel: number,
            server_name: start.server_name,
            profiles: start.profiles,
        }));
    }

    fn on_close(&mut self, msgno: MsgNo, close: Close) {
        let number = close.number;
        let Some(ch) = self.channels.get(&number).filter(|c| c.state.is_open()) else {
            return self.refuse(
                msgno,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "no such channel",
            );
        };
        if self.pending_closes.contains_key(&number) || ch.state.close_agreed().is_some() {
            return self.refuse(
                msgno,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "close already requested",
            );
        }
        if ch.state.we_close() {
            // Close in transit (RFC 3080 2.3.1.3): both want it closed, so agree
            // without asking the application; the channel closes once.
            return self.close_accepted(number, msgno);
        }
        self.pending_closes.insert(number, msgno);
        self.events.push_back(Event::CloseRequested {
            channel: number,
            code: close.code,
            lang: close.lang,
            text: close.text,
        });
    }

    /// The peer's answer to our oldest channel-0 request. A reply that does
    /// not fit the request ends the session (RFC 3080 2.2.2.1).
    fn on_zero_reply(&mut self, kind: MessageKind, body: &[u8]) -> Result<(), ProtocolError> {
        let request = self
            .requests
            .pop_front()
            .ok_or_else(|| bad_reply("reply to no request".into()))?;
        let reply = ChannelZeroMessage::parse(body)?;
        match (request, kind, reply) {
            (Request::Greeting, MessageKind::Rpy, ChannelZeroMessage::Greeting(greeting)) => {
                self.peer_greeting = Some(greeting.clone());
                self.greeted();
                self.events.push_back(Event::Greeting(greeting));
                self.flush_deferred();
            }
            (Request::Greeting, MessageKind::Err, ChannelZeroMessage::Error(error)) => {
                self.end(SessionEnd::Refused(error));
            }
            (
                Request::Start { channel, offered },
                MessageKind::Rpy,
                ChannelZeroMessage::Profile(profile),
            ) => {
                if !offered.contains(&profile.uri) {
                    return Err(bad_reply(format!(
                        "start of channel {channel} answered with profile {} that was not offered",
                        profile.uri
                    )));
                }
                if !self.tls_start_answered(channel, &profile)?
                    && !self.sasl_start_answered(channel, &profile)?
                {
                    self.channel_started(channel, profile);
                }
            }
            (
                Request::Start { channel, .. },
                MessageKind::Err,
                ChannelZeroMessage::Error(error),
            ) => {
                // (SASL first: removing the channel forgets its exchange.)
                self.sasl_start_refused(channel, &error);
                self.remove_channel(channel);
                self.tls_start_refused(channel, &error);
                self.events
                    .push_back(Event::ChannelRefused { channel, error });
            }
            (Request::Close { channel }, MessageKind::Rpy, ChannelZeroMessage::Ok) => {
                if channel == 0 {
                    self.end(SessionEnd::Released);
                } else if let Some(ch) = self.remove_channel(channel) {
                    // Their own close of it, agreed or not yet answered,
                    // still gets its <ok/> (close in transit, RFC 3080 2.3.1.3).
                    let theirs = ch
                        .state
                        .close_agreed()
                        .or(self.pending_closes.remove(&channel));
                    if let Some(msgno) = theirs {
                        self.reply_zero(msgno, FrameType::Rpy, ok_body(), None);
                    }
                    self.events.push_back(Event::ChannelClosed { channel });
                }
            }
            (Request::Close { channel }, MessageKind::Err, ChannelZeroMessage::Error(error)) => {
                // Refused, but if we agreed to their close the channel is
                // closing anyway: report only that.
                if let Some(ch) = self.channels.get_mut(&channel)
                    && ch.state.close_refused()
                {
                    self.events
                        .push_back(Event::CloseRefused { channel, error });
                }
            }
            (request, kind, reply) => {
                return Err(bad_reply(format!(
                    "{kind:?} with <{}> does not answer {request:?}",
                    element_name(&reply)
                )));
            }
        }
        Ok(())
    }

    /// Our start request succeeded: the channel opens, announces its
    /// window before any message (RFC 3081 3.1.4: its SEQ is due, and
    /// `transmit` writes due SEQs before any data frame), and may send.
    fn channel_started(&mut self, channel: u32, profile: Profile) {
        if self.open_started_channel(channel, &profile) {
            self.events
                .push_back(Event::ChannelOpened { channel, profile });
        }
    }

    /// The channel of our start request opens with `profile` (false: it
    /// is gone).
    pub(super) fn open_started_channel(&mut self, channel: u32, profile: &Profile) -> bool {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return false;
        };
        ch.state.started();
        ch.tls = profile.uri == crate::tls::TLS_URI;
        ch.profile = profile.uri.clone();
        ch.start_reply = profile.content.clone();
        if let Some(seq) = ch.recv.initial_seq(channel) {
            self.seqs_due.add(ch, seq);
        }
        true
    }
}

fn element_name(message: &ChannelZeroMessage) -> &'static str {
    match message {
        ChannelZeroMessage::Greeting(_) => "greeting",
        ChannelZeroMessage::Start(_) => "start",
        ChannelZeroMessage::Close(_) => "close",
        ChannelZeroMessage::Ok => "ok",
        ChannelZeroMessage::Error(_) => "error",
        ChannelZeroMessage::Profile(_) => "profile",
    }
}
