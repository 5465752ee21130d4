//! The TLS transport security profile (RFC 3080 3.1) between two in-memory
//! sessions: the handshake runs inside the sessions (rustls in memory), the
//! "drivers" here only move bytes. Certificates are generated at test time.

use beep_proto::reply_code::ReplyCode;
use beep_proto::tls::{CertificateProblem, TLS_URI, TlsClient, TlsError, TlsServer};
use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, ProtocolError, Session, SessionEnd, UsageError};

const ECHO: &str = "http://example.org/beep/echo";
const SECRET: &str = "http://example.org/beep/secret";

/// A CA, and a leaf for `names` that it signed, as PEM.
struct Pki {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
    leaf_der: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Each CA has a name of its own: a stranger's CA must not look like ours.
    static CAS: AtomicUsize = AtomicUsize::new(0);
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let n = CAS.fetch_add(1, Ordering::Relaxed);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("beep-rs test CA {n}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
    }
}

impl Pki {
    fn server(&self) -> TlsServer {
        TlsServer::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
    fn client(&self, name: &str) -> TlsClient {
        TlsClient::with_ca_pem(self.ca_pem.as_bytes(), name).unwrap()
    }
}

fn listener_config() -> Config {
    Config {
        profiles: vec![ECHO.into(), TLS_URI.into()],
        tls_profiles: vec![SECRET.into()],
        ..Config::default()
    }
}

/// How the bytes travel between the two sessions.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// Each `poll_transmit` result whole.
    Whole,
    /// One byte at a time.
    Bytewise,
    /// Pieces of pseudo-random sizes from this seed.
    Random(u64),
}

struct Pair {
    a: Session,
    b: Session,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    split: Split,
    rng: u64,
    /// The listener's answer to a TLS request: accept with this server.
    server: Option<TlsServer>,
}

impl Pair {
    fn new(split: Split, server: Option<TlsServer>) -> Self {
        let mut pair = Pair {
            a: Session::initiator(Config::default()),
            b: Session::listener(listener_config()),
            a_events: Vec::new(),
            b_events: Vec::new(),
            split,
            rng: match split {
                Split::Random(seed) => seed | 1,
                _ => 1,
            },
            server,
        };
        pair.pump();
        pair
    }

    fn next_len(&mut self, left: usize) -> usize {
        match self.split {
            Split::Whole => left,
            Split::Bytewise => 1,
            Split::Random(_) => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                (self.rng % 700) as usize % left + 1
            }
        }
    }

    /// Feeds `bytes` to `to` in pieces; stops at the first error.
    fn deliver(&mut self, to_listener: bool, bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.next_len(rest.len());
            let target = if to_listener {
                &mut self.b
            } else {
                &mut self.a
            };
            target.handle_input(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Moves bytes and reacts (the listener answers TLS and start requests)
    /// until nothing moves. Returns the first input error of each side.
    fn pump(&mut self) -> (Option<ProtocolError>, Option<ProtocolError>) {
        let (mut a_err, mut b_err) = (None, None);
        loop {
            let mut moved = false;
            while let Some(bytes) = self.a.poll_transmit() {
                moved = true;
                if let Err(e) = self.deliver(true, &bytes) {
                    b_err.get_or_insert(e);
                }
            }
            while let Some(bytes) = self.b.poll_transmit() {
                moved = true;
                if let Err(e) = self.deliver(false, &bytes) {
                    a_err.get_or_insert(e);
                }
            }
            while let Some(e) = self.a.poll_event() {
                moved = true;
                if let Event::Message(m) = &e
                    && m.kind == beep_proto::MessageKind::Msg
                {
                    self.a
                        .send_rpy(m.channel, m.msgno, m.message.clone())
                        .unwrap();
                }
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                moved = true;
                match &e {
                    Event::TlsRequested(req) => match &self.server {
                        Some(server) => self.b.accept_tls(req.channel, server).unwrap(),
                        None => self
                            .b
                            .deny_tls(
                                req.channel,
                                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                                "no TLS here",
                            )
                            .unwrap(),
                    },
                    Event::StartRequested(req) => {
                        let profile = req.profiles[0].clone();
                        if self
                            .b
                            .accept_start(req.channel, Profile::new(profile.uri))
                            .is_err()
                        {
                            self.b
                                .deny_start(
                                    req.channel,
                                    ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                                    "no",
                                )
                                .unwrap();
                        }
                    }
                    Event::Message(m) if m.kind == beep_proto::MessageKind::Msg => {
                        self.b
                            .send_rpy(m.channel, m.msgno, m.message.clone())
                            .unwrap();
                    }
                    Event::CloseRequested { channel, .. } => self.b.accept_close(*channel).unwrap(),
                    _ => {}
                }
                self.b_events.push(e);
            }
            if !moved {
                return (a_err, b_err);
            }
        }
    }
}

fn tls_active(events: &[Event]) -> Option<&beep_proto::tls::TlsInfo> {
    events.iter().find_map(|e| match e {
        Event::TlsActive(info) => Some(info),
        _ => None,
    })
}

fn session_end(events: &[Event]) -> Option<&SessionEnd> {
    events.iter().find_map(|e| match e {
        Event::SessionEnded(end) => Some(end),
        _ => None,
    })
}

/// Runs TLS, then an echo over it, with the bytes split as `split`.
fn tls_then_echo(split: Split) {
    let pki = pki(&["localhost"]);
    let mut pair = Pair::new(split, Some(pki.server()));
    assert!(
        !pair
            .a
            .peer_greeting()
            .unwrap()
            .profiles
            .contains(&SECRET.to_string()),
        "a profile offered only over TLS is not advertised before it"
    );
    pair.a.start_tls(pki.client("localhost")).unwrap();
    let (a_err, b_err) = pair.pump();
    assert_eq!((a_err, b_err), (None, None), "{split:?}");

    // Both sides reset and report TLS, then greet again over it.
    for (events, side) in [(&pair.a_events, "initiator"), (&pair.b_events, "listener")] {
        let reset = events.iter().position(|e| *e == Event::TuningReset);
        let active = events.iter().position(|e| matches!(e, Event::TlsActive(_)));
        let greeting = events.iter().rposition(|e| matches!(e, Event::Greeting(_)));
        assert!(
            reset < active && active < greeting && reset.is_some(),
            "{side} {split:?}: {events:?}"
        );
    }
    let client_view = tls_active(&pair.a_events).unwrap();
    assert_eq!(client_view.peer_certificates[0].as_ref(), &pki.leaf_der[..]);
    assert!(client_view.protocol_version.is_some() && client_view.cipher_suite.is_some());
    assert_eq!(
        client_view.server_name.as_deref(),
        Some("localhost"),
        "verified"
    );
    let server_view = tls_active(&pair.b_events).unwrap();
    assert_eq!(server_view.server_name.as_deref(), Some("localhost"), "SNI");
    assert!(pair.a.is_tls_active() && pair.b.is_tls_active());

    // After TLS the listener offers SECRET and no longer TLS (RFC 3080 3).
    let profiles = &pair.a.peer_greeting().unwrap().profiles;
    assert!(profiles.contains(&SECRET.to_string()), "{profiles:?}");
    assert!(!profiles.contains(&TLS_URI.to_string()), "{profiles:?}");

    // Channel numbers restart; an echo works over TLS.
    let channel = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    assert_eq!(channel, 1);
    pair.pump();
    let body = vec![b'x'; 20_000];
    let msgno = pair
        .a
        .send_msg(channel, Message::new(body.clone()))
        .unwrap();
    let (a_err, b_err) = pair.pump();
    assert_eq!((a_err, b_err), (None, None));
    let reply = pair
        .a_events
        .iter()
        .find_map(|e| match e {
            Event::Message(m) if m.msgno == msgno && m.channel == channel => Some(m),
            _ => None,
        })
        .expect("echo over TLS");
    assert_eq!(&reply.message.body()[..], &body[..]);

    // The release goes through TLS too.
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    assert_eq!(session_end(&pair.a_events), Some(&SessionEnd::Released));
    assert_eq!(session_end(&pair.b_events), Some(&SessionEnd::Released));
}

/// RFC 3080 3.1, RFC 3080 3.1.3.2: `<ready/>` piggybacked on the start,
/// `<proceed/>` on its reply, every channel closed, the handshake on the
/// same stream, new greetings over TLS.
#[test]
fn rfc3080_3_1_tls_then_messages_whole_writes() {
    tls_then_echo(Split::Whole);
}

/// The same, one byte at a time (any split of the stream gives the same
/// result, TLS records included).
#[test]
fn rfc3080_3_1_tls_then_messages_bytewise() {
    tls_then_echo(Split::Bytewise);
}

#[test]
fn rfc3080_3_1_tls_then_messages_random_splits() {
    for seed in 1..8 {
        tls_then_echo(Split::Random(seed * 7919));
    }
}

/// RFC 3080 3.1.3.2: a listener that refuses answers with an `<error>`;
/// the session goes on in plain.
#[test]
fn rfc3080_3_1_3_2_refused_tls_leaves_the_session_plain() {
    let mut pair = Pair::new(Split::Whole, None);
    let pki = pki(&["localhost"]);
    pair.a.start_tls(pki.client("localhost")).unwrap();
    pair.pump();
    let refused = pair
        .a_events
        .iter()
        .find_map(|e| match e {
            Event::TlsRefused { error, .. } => Some(error),
            _ => None,
        })
        .expect("TlsRefused");
    assert_eq!(refused.code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN);
    assert!(!pair.a.is_tls_active());
    // Plain traffic still flows.
    let ch = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(pair.a.is_channel_open(ch));
}

fn failed_handshake(pki_names: &[&str], client: impl FnOnce(&Pki) -> TlsClient) -> Pair {
    let pki = pki(pki_names);
    let mut pair = Pair::new(Split::Whole, Some(pki.server()));
    pair.a.start_tls(client(&pki)).unwrap();
    pair.pump();
    pair
}

#[test]
fn tls_wrong_certificate_name_ends_with_a_typed_error() {
    let pair = failed_handshake(&["localhost"], |p| p.client("other.example"));
    assert_eq!(
        session_end(&pair.a_events),
        Some(&SessionEnd::TlsFailed(TlsError::Certificate(
            CertificateProblem::NotValidForName
        )))
    );
    assert!(
        matches!(
            session_end(&pair.b_events),
            Some(SessionEnd::TlsFailed(TlsError::Alert(_)))
        ),
        "{:?}",
        pair.b_events
    );
}

#[test]
fn tls_untrusted_ca_ends_with_a_typed_error() {
    let other = pki(&["localhost"]);
    let pair = failed_handshake(&["localhost"], |_| other.client("localhost"));
    assert_eq!(
        session_end(&pair.a_events),
        Some(&SessionEnd::TlsFailed(TlsError::Certificate(
            CertificateProblem::UnknownIssuer
        )))
    );
}

#[test]
fn tls_pinned_certificate_is_accepted_and_another_is_not() {
    let pair = failed_handshake(&["localhost"], |p| {
        TlsClient::pinned(p.leaf_der.clone().into(), "localhost").unwrap()
    });
    assert!(pair.a.is_tls_active(), "{:?}", pair.a_events);
    let stranger = pki(&["localhost"]);
    let pair = failed_handshake(&["localhost"], |_| {
        TlsClient::pinned(stranger.leaf_der.clone().into(), "localhost").unwrap()
    });
    assert_eq!(
        session_end(&pair.a_events),
        Some(&SessionEnd::TlsFailed(TlsError::Certificate(
            CertificateProblem::NotPinned
        )))
    );
}

/// Drives the exchange up to `<proceed/>` by hand; returns the pair with
/// the listener's proceed delivered (the initiator's ClientHello pending).
fn up_to_proceed() -> (Session, Session, Pki) {
    let pki = pki(&["localhost"]);
    let mut pair = Pair::new(Split::Whole, Some(pki.server()));
    pair.a.start_tls(pki.client("localhost")).unwrap();
    // The start with <ready/> goes to the listener, which accepts.
    while let Some(bytes) = pair.a.poll_transmit() {
        pair.b.handle_input(&bytes).unwrap();
    }
    while let Some(e) = pair.b.poll_event() {
        if let Event::TlsRequested(req) = e {
            pair.b.accept_tls(req.channel, &pki.server()).unwrap();
        }
    }
    (pair.a, pair.b, pki)
}

#[test]
fn tls_peer_closing_mid_handshake_ends_with_a_typed_error() {
    let (mut a, mut b, _pki) = up_to_proceed();
    while let Some(bytes) = b.poll_transmit() {
        a.handle_input(&bytes).unwrap();
    }
    // The initiator's ClientHello reaches the listener, then the
    // connection ends before the handshake completes.
    while let Some(bytes) = a.poll_transmit() {
        b.handle_input(&bytes).unwrap();
    }
    b.handle_eof();
    assert_eq!(
        b.end_reason(),
        Some(&SessionEnd::TlsFailed(TlsError::ClosedDuringHandshake))
    );
    a.handle_eof();
    assert_eq!(
        a.end_reason(),
        Some(&SessionEnd::TlsFailed(TlsError::ClosedDuringHandshake))
    );
}

#[test]
fn tls_garbage_instead_of_a_record_ends_with_a_typed_error() {
    let (_a, mut b, _pki) = up_to_proceed();
    while b.poll_transmit().is_some() {}
    let err = b.handle_input(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert!(
        matches!(err, ProtocolError::Tls(TlsError::Protocol(_))),
        "{err:?}"
    );
    assert!(matches!(
        b.end_reason(),
        Some(SessionEnd::TlsFailed(TlsError::Protocol(_)))
    ));
}

/// RFC 3080 3.1.3.2: after `<proceed/>` no plain frame may follow: one
/// that does is not TLS, and ends the session.
#[test]
fn rfc3080_3_1_3_2_plain_frame_after_proceed_is_refused() {
    let (_a, mut b, _pki) = up_to_proceed();
    while b.poll_transmit().is_some() {}
    let err = b
        .handle_input(b"MSG 0 1 . 0 8\r\nhello\r\n\r\nEND\r\n")
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Tls(_)), "{err:?}");
}

/// RFC 3080 3.1.3.1: after sending `<ready/>` we send nothing until the
/// answer: a MSG asked for meanwhile is refused, nothing is written.
#[test]
fn rfc3080_3_1_3_1_ready_sender_is_silent_until_answered() {
    let pki = pki(&["localhost"]);
    let mut pair = Pair::new(Split::Whole, Some(pki.server()));
    let ch = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(pair.a.is_channel_open(ch));
    // TLS is an initial tuning: with a channel open, it is refused.
    assert!(matches!(
        pair.a.start_tls(pki.client("localhost")),
        Err(UsageError::TuningNotPossible { .. })
    ));
    pair.a.close_channel(ch, ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    pair.a.start_tls(pki.client("localhost")).unwrap();
    let start = pair.a.poll_transmit().unwrap();
    assert!(
        start.windows(9).any(|w| w == b"<ready />"),
        "{:?}",
        String::from_utf8_lossy(&start)
    );
    assert!(pair.a.open_channel(vec![Profile::new(ECHO)], None).is_err());
    assert!(pair.a.poll_transmit().is_none(), "silent after <ready/>");
    assert!(!pair.a.wants_transmit());
}

/// A second `<ready/>` on a TLS session: refused by us as a usage error,
/// and refused by the listener with an `<error>` when a peer sends one.
#[test]
fn tls_second_ready_is_refused() {
    let pki = pki(&["localhost"]);
    let mut pair = Pair::new(Split::Whole, Some(pki.server()));
    pair.a.start_tls(pki.client("localhost")).unwrap();
    pair.pump();
    assert!(pair.a.is_tls_active());
    assert!(matches!(
        pair.a.start_tls(pki.client("localhost")),
        Err(UsageError::TuningNotPossible { .. })
    ));
    // A peer that asks anyway (through a plain start of the TLS profile).
    pair.b_events.clear();
    let ch = pair
        .a
        .open_channel(vec![Profile::new(TLS_URI).with_content("<ready />")], None)
        .unwrap();
    pair.pump();
    let refused = pair.a_events.iter().rev().find_map(|e| match e {
        Event::ChannelRefused { channel, error } if *channel == ch => Some(error),
        _ => None,
    });
    assert!(refused.is_some(), "{:?}", pair.a_events);
    assert!(
        !pair
            .b_events
            .iter()
            .any(|e| matches!(e, Event::TlsRequested(_)))
    );
}

/// A profile offered only over TLS: a start for it before TLS is refused
/// with 538 (the operation requires privacy), and not shown to the
/// application.
#[test]
fn tls_only_profile_is_refused_before_tls() {
    let mut pair = Pair::new(Split::Whole, None);
    let ch = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    pair.pump();
    let error = pair
        .a_events
        .iter()
        .find_map(|e| match e {
            Event::ChannelRefused { channel, error } if *channel == ch => Some(error),
            _ => None,
        })
        .expect("refused");
    assert_eq!(error.code.get(), 538);
    assert!(
        !pair
            .b_events
            .iter()
            .any(|e| matches!(e, Event::StartRequested(_)))
    );
}

/// A listener that requires TLS for the whole session advertises only TLS
/// and refuses every other start until TLS is active.
#[test]
fn tls_required_session_offers_only_tls_before_it() {
    let pki = pki(&["localhost"]);
    let mut pair = Pair {
        a: Session::initiator(Config::default()),
        b: Session::listener(Config {
            require_tls: true,
            ..listener_config()
        }),
        a_events: Vec::new(),
        b_events: Vec::new(),
        split: Split::Whole,
        rng: 1,
        server: Some(pki.server()),
    };
    pair.pump();
    assert_eq!(
        pair.a.peer_greeting().unwrap().profiles,
        vec![TLS_URI.to_string()]
    );
    let ch = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(!pair.a.is_channel_open(ch));
    pair.a.start_tls(pki.client("localhost")).unwrap();
    pair.pump();
    assert!(pair.a.is_tls_active());
    let profiles = &pair.a.peer_greeting().unwrap().profiles;
    assert!(profiles.contains(&ECHO.to_string()) && profiles.contains(&SECRET.to_string()));
    let ch = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(pair.a.is_channel_open(ch));
}

/// RFC 3080 3.1.1: `<ready/>` as a MSG on a TLS channel already started
/// (no piggybacking), answered by `<proceed/>` in a RPY.
#[test]
fn rfc3080_3_1_1_ready_as_a_message_on_the_tls_channel() {
    let pki = pki(&["localhost"]);
    let mut pair = Pair::new(Split::Whole, Some(pki.server()));
    // A plain start of the TLS profile: the listener's application accepts it.
    let ch = pair
        .a
        .open_channel(vec![Profile::new(TLS_URI)], None)
        .unwrap();
    pair.pump();
    assert!(pair.a.is_channel_open(ch));
    pair.a.start_tls(pki.client("localhost")).unwrap();
    let (a_err, b_err) = pair.pump();
    assert_eq!((a_err, b_err), (None, None));
    assert!(
        pair.a.is_tls_active() && pair.b.is_tls_active(),
        "{:?}",
        pair.a_events
    );
}

/// RFC 3080 2 (one tuning channel at a time): while a peer's TLS request
/// awaits its answer, a second one is refused (450) without asking the
/// application.
#[test]
fn rfc3080_2_one_tuning_at_a_time() {
    let mut b = Session::listener(listener_config());
    while b.poll_transmit().is_some() {}
    let xml = "Content-Type: application/beep+xml\r\n\r\n";
    let greeting = format!("{xml}<greeting />\r\n");
    let start = |n: u32| {
        format!(
            "{xml}<start number='{n}'><profile uri='{TLS_URI}'><![CDATA[<ready />]]></profile></start>\r\n"
        )
    };
    let (s1, s3) = (start(1), start(3));
    let mut input = format!("RPY 0 0 . 0 {}\r\n{greeting}END\r\n", greeting.len());
    let mut seqno = greeting.len();
    for (msgno, body) in [(0, &s1), (1, &s3)] {
        input += &format!("MSG 0 {msgno} . {seqno} {}\r\n{body}END\r\n", body.len());
        seqno += body.len();
    }
    b.handle_input(input.as_bytes()).unwrap();
    let requests: Vec<_> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            Event::TlsRequested(r) => Some(r.channel),
            _ => None,
        })
        .collect();
    assert_eq!(requests, [1]);
    // The refusal of the second waits for the answer to the first (replies
    // in order, RFC 3080 2.6.1).
    assert!(b.poll_transmit().is_none());
    b.deny_tls(
        1,
        beep_proto::ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
        "not now",
    )
    .unwrap();
    let out: Vec<u8> = std::iter::from_fn(|| b.poll_transmit()).flatten().collect();
    let out = String::from_utf8_lossy(&out);
    let (first, second) = (out.find("ERR 0 0 ").unwrap(), out.find("ERR 0 1 ").unwrap());
    assert!(first < second && out.contains("code='450'"), "{out}");
}

/// RFC 3080 3.1.3.1: the receiver of `<ready/>` first finishes the
/// replies it owes: `accept_tls` is refused while a MSG of the peer's
/// awaits its reply, and goes through once it is answered (the reply
/// leaves before `<proceed/>`).
#[test]
fn rfc3080_3_1_3_1_proceed_waits_for_owed_replies() {
    let pki = pki(&["localhost"]);
    let mut a = Session::initiator(Config::default());
    let mut b = Session::listener(listener_config());
    let pump = |a: &mut Session, b: &mut Session| loop {
        let mut moved = false;
        while let Some(bytes) = a.poll_transmit() {
            b.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(bytes) = b.poll_transmit() {
            a.handle_input(&bytes).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    };
    pump(&mut a, &mut b);
    let ch = a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pump(&mut a, &mut b);
    b.accept_start(ch, Profile::new(ECHO)).unwrap();
    pump(&mut a, &mut b);
    a.send_msg(ch, Message::new("owed")).unwrap();
    // A TLS start while the MSG is unanswered (a plain start carrying
    // <ready/>, as a peer that does not wait would send it).
    a.open_channel(vec![Profile::new(TLS_URI).with_content("<ready />")], None)
        .unwrap();
    pump(&mut a, &mut b);
    let mut msg = None;
    let mut tls = None;
    while let Some(e) = b.poll_event() {
        match e {
            Event::Message(m) => msg = Some(m),
            Event::TlsRequested(r) => tls = Some(r),
            _ => {}
        }
    }
    let (msg, tls) = (msg.unwrap(), tls.unwrap());
    assert!(matches!(
        b.accept_tls(tls.channel, &pki.server()),
        Err(UsageError::TuningNotPossible { .. })
    ));
    b.send_rpy(msg.channel, msg.msgno, Message::new("paid"))
        .unwrap();
    b.accept_tls(tls.channel, &pki.server()).unwrap();
    let mut plain = Vec::new();
    while let Some(bytes) = b.poll_transmit() {
        plain.extend_from_slice(&bytes);
    }
    let plain = String::from_utf8_lossy(&plain);
    let (reply, proceed) = (
        plain.find("paid").unwrap(),
        plain.find("<proceed />").unwrap(),
    );
    assert!(reply < proceed, "{plain}");
    assert!(b.is_tls_active());
}
