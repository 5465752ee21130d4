//! The SASL family of profiles (RFC 3080 4.1): user authentication with
//! rsasl, driven in memory like TLS.
//!
//! Each SASL mechanism is a profile, `http://iana.org/beep/SASL/<NAME>`
//! ([`Mechanism::uri`]). The client starts a channel on it
//! ([`Session::start_sasl`](crate::Session::start_sasl)), the initial
//! response piggybacked on the `<start>` as LibVortex does; challenges and
//! responses then travel as `<blob>` MSG/RPY on that channel, until the
//! server says `<blob status='complete'>` or `<error>`. The session runs
//! both sides itself; the application only supplies credentials
//! ([`SaslClient`]) and, on the server, its decisions
//! ([`AuthRequest`], answered with
//! [`Session::answer_auth`](crate::Session::answer_auth)).
//!
//! rsasl stays behind this module (as rustls stays behind
//! [`crate::tls`]): none of its types is part of the API.
//!
//! What is wired: ANONYMOUS, PLAIN, EXTERNAL, SCRAM-SHA-256 (rsasl's),
//! CRAM-MD5 and DIGEST-MD5 (custom rsasl mechanisms of this crate), see
//! [`Mechanism::is_available`], and SCRAM-SHA-256-PLUS, SCRAM bound to
//! the TLS session by RFC 9266's `tls-exporter` (32 octets of the TLS
//! 1.3 exporter, label `EXPORTER-Channel-Binding`, no context), offered
//! only while TLS 1.3 is active. No security layer is ever negotiated (DIGEST-MD5 runs
//! with `qop=auth` only), so a success does not reset the session (RFC
//! 3080 4.1: a reset follows only a security layer).
//!
//! ```
//! use beep_proto::sasl::{Mechanism, SaslClient};
//! let client = SaslClient::plain("bob", "secret").with_authzid("alice");
//! assert_eq!(client.mechanism(), Mechanism::Plain);
//! assert_eq!(Mechanism::Plain.uri(), "http://iana.org/beep/SASL/PLAIN");
//! ```

// Mechanisms rsasl lacks, written as rsasl custom mechanisms.
pub(crate) mod cram_md5;
pub(crate) mod digest_md5;

// The rsasl plumbing: the client and server sides of one exchange, and
// the SCRAM secret derivation.
pub(crate) mod client;
mod registry;
mod scram;
pub(crate) mod server;

use crate::xml::XmlError;

/// What every SASL profile URI starts with (RFC 3080 4.1.1).
///
/// ```
/// assert!(beep_proto::sasl::Mechanism::Anonymous.uri().starts_with(beep_proto::sasl::SASL_URI_PREFIX));
/// ```
pub const SASL_URI_PREFIX: &str = "http://iana.org/beep/SASL/";

/// A SASL mechanism beep-proto knows (RFC 3080 4.1.1: one profile per
/// IANA-registered mechanism).
///
/// ```
/// use beep_proto::sasl::Mechanism;
/// let m = Mechanism::from_uri("http://iana.org/beep/SASL/SCRAM-SHA-256").unwrap();
/// assert_eq!((m, m.name()), (Mechanism::ScramSha256, "SCRAM-SHA-256"));
/// assert_eq!(Mechanism::from_uri("http://iana.org/beep/SASL/OTP"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// ANONYMOUS (RFC 4505): no credentials, an optional trace token.
    Anonymous,
    /// PLAIN (RFC 4616): user name and password in the clear (use it
    /// over TLS).
    Plain,
    /// CRAM-MD5 (RFC 2195): a keyed digest of a server challenge.
    CramMd5,
    /// DIGEST-MD5 (RFC 2831), authentication only.
    DigestMd5,
    /// SCRAM-SHA-256 (RFC 7677): salted challenge-response, mutual.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802 6): SCRAM-SHA-256 bound to
    /// the session's TLS with the `tls-exporter` channel binding (RFC
    /// 9266), so that an authentication relayed through another TLS
    /// session fails. Offered and usable only over TLS 1.3 (RFC 9266 3
    /// wants TLS 1.2's exporter only with extended master secret, which
    /// the session cannot see).
    ScramSha256Plus,
    /// EXTERNAL (RFC 4422 appendix A): the identity an external service
    /// (TLS, IPsec, a local one) established (RFC 3080 4.1.3).
    External,
}

impl Mechanism {
    /// Every mechanism, in a fixed order.
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::Mechanism::ALL.len(), 7);
    /// ```
    pub const ALL: [Mechanism; 7] = [
        Mechanism::Anonymous,
        Mechanism::Plain,
        Mechanism::CramMd5,
        Mechanism::DigestMd5,
        Mechanism::ScramSha256,
        Mechanism::ScramSha256Plus,
        Mechanism::External,
    ];

    /// The IANA name of the mechanism.
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::Mechanism::CramMd5.name(), "CRAM-MD5");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Anonymous => "ANONYMOUS",
            Mechanism::Plain => "PLAIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::DigestMd5 => "DIGEST-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// The profile URI (RFC 3080 4.1.1).
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::Mechanism::External.uri(), "http://iana.org/beep/SASL/EXTERNAL");
    /// ```
    pub const fn uri(self) -> &'static str {
        match self {
            Mechanism::Anonymous => "http://iana.org/beep/SASL/ANONYMOUS",
            Mechanism::Plain => "http://iana.org/beep/SASL/PLAIN",
            Mechanism::CramMd5 => "http://iana.org/beep/SASL/CRAM-MD5",
            Mechanism::DigestMd5 => "http://iana.org/beep/SASL/DIGEST-MD5",
            Mechanism::ScramSha256 => "http://iana.org/beep/SASL/SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "http://iana.org/beep/SASL/SCRAM-SHA-256-PLUS",
            Mechanism::External => "http://iana.org/beep/SASL/EXTERNAL",
        }
    }

    /// The mechanism of a profile URI, if it is one of these.
    ///
    /// ```
    /// use beep_proto::sasl::Mechanism;
    /// assert_eq!(Mechanism::from_uri(Mechanism::Plain.uri()), Some(Mechanism::Plain));
    /// assert_eq!(Mechanism::from_uri("http://iana.org/beep/TLS"), None);
    /// ```
    pub fn from_uri(uri: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.uri() == uri)
    }

    /// True when the session can run this mechanism today (both sides).
    /// A profile of a mechanism that is not is left to the application,
    /// like any other profile.
    ///
    /// ```
    /// assert!(beep_proto::sasl::Mechanism::ScramSha256.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        registry::mechanism(self).is_some()
    }

    /// True for mechanisms whose client speaks first (its initial
    /// response rides on the `<start>`, RFC 3080 4.1.1); CRAM-MD5 and
    /// DIGEST-MD5 begin with the server's challenge, which rides on the
    /// start's reply.
    ///
    /// ```
    /// use beep_proto::sasl::Mechanism;
    /// assert!(Mechanism::Plain.client_first() && !Mechanism::CramMd5.client_first());
    /// ```
    pub const fn client_first(self) -> bool {
        !matches!(self, Mechanism::CramMd5 | Mechanism::DigestMd5)
    }

    /// True for the mechanisms that bind the authentication to the TLS
    /// session (channel binding, RFC 5056): they need TLS 1.3 active.
    ///
    /// ```
    /// use beep_proto::sasl::Mechanism;
    /// assert!(Mechanism::ScramSha256Plus.needs_channel_binding());
    /// assert!(!Mechanism::ScramSha256.needs_channel_binding());
    /// ```
    pub const fn needs_channel_binding(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus)
    }

    /// True for the SCRAM family, whose names travel escaped (RFC 5802
    /// 5.1: `,` as `=2C`, `=` as `=3D`).
    pub(crate) const fn is_scram(self) -> bool {
        matches!(self, Mechanism::ScramSha256 | Mechanism::ScramSha256Plus)
    }
}

impl std::fmt::Display for Mechanism {
    /// ```
    /// assert_eq!(beep_proto::sasl::Mechanism::Plain.to_string(), "PLAIN");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The client's side of an authentication: the mechanism and the
/// credentials it needs, given to
/// [`Session::start_sasl`](crate::Session::start_sasl).
///
/// The password never shows in `Debug` output.
///
/// ```
/// use beep_proto::sasl::SaslClient;
/// let client = SaslClient::scram_sha256("bob", "secret");
/// assert!(!format!("{client:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SaslClient {
    pub(crate) mechanism: Mechanism,
    pub(crate) authcid: String,
    pub(crate) password: String,
    pub(crate) authzid: Option<String>,
    pub(crate) trace: Option<String>,
    pub(crate) server_name: Option<String>,
}

impl SaslClient {
    fn new(mechanism: Mechanism, authcid: String, password: String) -> Self {
        SaslClient {
            mechanism,
            authcid,
            password,
            authzid: None,
            trace: None,
            server_name: None,
        }
    }

    /// ANONYMOUS with `trace` (RFC 4505 2: an email address or an opaque
    /// string; empty for none).
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::anonymous("bob@example.org");
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::Anonymous);
    /// ```
    pub fn anonymous(trace: impl Into<String>) -> Self {
        let mut client = Self::new(Mechanism::Anonymous, String::new(), String::new());
        let trace = trace.into();
        client.trace = (!trace.is_empty()).then_some(trace);
        client
    }

    /// PLAIN as `authcid` with `password` (sent in the clear).
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::plain("bob", "secret");
    /// assert_eq!(client.authcid(), "bob");
    /// ```
    pub fn plain(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(Mechanism::Plain, authcid.into(), password.into())
    }

    /// CRAM-MD5 as `authcid` with `password`.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::cram_md5("bob", "secret");
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::CramMd5);
    /// ```
    pub fn cram_md5(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(Mechanism::CramMd5, authcid.into(), password.into())
    }

    /// DIGEST-MD5 as `authcid` with `password`.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::digest_md5("bob", "secret");
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::DigestMd5);
    /// ```
    pub fn digest_md5(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(Mechanism::DigestMd5, authcid.into(), password.into())
    }

    /// SCRAM-SHA-256 as `authcid` with `password`; the listener proves it
    /// knows the password too.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::scram_sha256("bob", "secret");
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::ScramSha256);
    /// ```
    pub fn scram_sha256(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(Mechanism::ScramSha256, authcid.into(), password.into())
    }

    /// SCRAM-SHA-256-PLUS as `authcid` with `password`: SCRAM bound to
    /// the session's TLS 1.3 (`tls-exporter`, RFC 9266), so that it
    /// fails if anyone relays it into another TLS session. Start it once
    /// TLS is active.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::scram_sha256_plus("bob", "secret");
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::ScramSha256Plus);
    /// ```
    pub fn scram_sha256_plus(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(Mechanism::ScramSha256Plus, authcid.into(), password.into())
    }

    /// EXTERNAL: the identity an external service established (RFC 3080
    /// 4.1.3); with [`SaslClient::with_authzid`] to ask for another.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::external();
    /// assert_eq!(client.mechanism(), beep_proto::sasl::Mechanism::External);
    /// ```
    pub fn external() -> Self {
        Self::new(Mechanism::External, String::new(), String::new())
    }

    /// Asks to act as `authzid` (the authorization identity, RFC 4422
    /// 2); ANONYMOUS and CRAM-MD5 cannot carry one and ignore it.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::plain("bob", "secret").with_authzid("alice");
    /// assert_eq!(client.authzid(), Some("alice"));
    /// ```
    pub fn with_authzid(mut self, authzid: impl Into<String>) -> Self {
        let authzid = authzid.into();
        self.authzid = (!authzid.is_empty()).then_some(authzid);
        self
    }

    /// The `serverName` of the start (RFC 3080 2.3.1.2), which is also
    /// the host the mechanisms that name one (DIGEST-MD5) authenticate
    /// to.
    ///
    /// ```
    /// let client = beep_proto::sasl::SaslClient::plain("bob", "secret").with_server_name("beep.example.org");
    /// assert_eq!(client.server_name(), Some("beep.example.org"));
    /// ```
    pub fn with_server_name(mut self, server_name: impl Into<String>) -> Self {
        self.server_name = Some(server_name.into());
        self
    }

    /// The mechanism.
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::SaslClient::external().mechanism().name(), "EXTERNAL");
    /// ```
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The authentication identity (empty for ANONYMOUS and EXTERNAL).
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::SaslClient::external().authcid(), "");
    /// ```
    pub fn authcid(&self) -> &str {
        &self.authcid
    }

    /// The authorization identity asked for, if any.
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::SaslClient::external().authzid(), None);
    /// ```
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// The `serverName` the start will carry, if any.
    ///
    /// ```
    /// assert_eq!(beep_proto::sasl::SaslClient::external().server_name(), None);
    /// ```
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// What a success establishes, as both sides report it.
    pub(crate) fn info(&self) -> AuthInfo {
        AuthInfo {
            mechanism: self.mechanism,
            authcid: identity(self.mechanism, Some(&self.authcid)),
            authzid: match self.mechanism {
                Mechanism::Anonymous | Mechanism::CramMd5 => None,
                _ => self.authzid.clone(),
            },
        }
    }
}

impl std::fmt::Debug for SaslClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslClient")
            .field("mechanism", &self.mechanism)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .field("authzid", &self.authzid)
            .field("trace", &self.trace)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The authentication identity a success establishes: `anonymous` for
/// ANONYMOUS (RFC 4505 has no identity, only a trace), none (empty) for
/// EXTERNAL (the external service's identity is the application's to
/// know, e.g. [`Session::tls_info`](crate::Session::tls_info)'s
/// certificates), what the client sent otherwise.
pub(crate) fn identity(mechanism: Mechanism, authcid: Option<&str>) -> String {
    match mechanism {
        Mechanism::Anonymous => "anonymous".to_owned(),
        Mechanism::External => String::new(),
        _ => authcid.unwrap_or_default().to_owned(),
    }
}

/// What the server side needs of the application to finish an
/// exchange ([`AuthRequest::need`]).
///
/// ```
/// use beep_proto::sasl::AuthNeed;
/// assert_ne!(AuthNeed::Decide, AuthNeed::Secret);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthNeed {
    /// The client's credentials are in the request (PLAIN's password,
    /// ANONYMOUS's trace, EXTERNAL's authorization identity): decide, with
    /// [`AuthAnswer::Accept`], [`AuthAnswer::Deny`] or
    /// [`AuthAnswer::NoSuchUser`].
    Decide,
    /// The mechanism proves knowledge of a secret without sending it
    /// (SCRAM-SHA-256, CRAM-MD5, DIGEST-MD5): give the user's password
    /// with [`AuthAnswer::Secret`] (the session then checks the proof and
    /// accepts it if it holds, with the authorization identity of the
    /// request), or [`AuthAnswer::NoSuchUser`] or [`AuthAnswer::Deny`].
    Secret,
}

/// The peer asks to authenticate (RFC 3080 4.1), and the session needs
/// the application: answer with
/// [`Session::answer_auth`](crate::Session::answer_auth). Until then the
/// exchange waits (nothing else does).
///
/// The password never shows in `Debug` output.
///
/// ```
/// # use beep_proto::{Config, Event, Session};
/// # use beep_proto::sasl::{AuthAnswer, AuthNeed, Mechanism, SaslClient};
/// let plain = Mechanism::Plain.uri().to_string();
/// let mut server = Session::listener(Config { profiles: vec![plain], ..Config::default() });
/// let mut client = Session::initiator(Config::default());
/// client.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
/// # for _ in 0..3 {
/// #     while let Some(b) = client.poll_transmit() { server.handle_input(&b).unwrap(); }
/// #     while let Some(b) = server.poll_transmit() { client.handle_input(&b).unwrap(); }
/// # }
/// let request = std::iter::from_fn(|| server.poll_event())
///     .find_map(|e| match e { Event::AuthRequested(r) => Some(r), _ => None })
///     .unwrap();
/// assert_eq!((request.need, request.authcid.as_deref()), (AuthNeed::Decide, Some("bob")));
/// let answer = if request.password.as_deref() == Some("secret") { AuthAnswer::Accept } else { AuthAnswer::Deny };
/// server.answer_auth(request.channel, answer).unwrap();
/// assert_eq!(server.authenticated().unwrap().authcid, "bob");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequest {
    /// The SASL channel.
    pub channel: u32,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The authentication identity the client sent (none for ANONYMOUS
    /// and EXTERNAL).
    pub authcid: Option<String>,
    /// The authorization identity the client asked for, if any.
    pub authzid: Option<String>,
    /// PLAIN only: the password the client sent.
    pub password: Option<String>,
    /// ANONYMOUS only: the trace token the client sent, if any.
    pub anonymous_token: Option<String>,
    /// The `serverName` of the start, or the one bound to the session
    /// (RFC 3080 2.3.1.2): which user database to look in, for a listener
    /// serving several names.
    pub server_name: Option<String>,
    /// What the answer must be.
    pub need: AuthNeed,
    /// The session's TLS, when it runs over TLS: for EXTERNAL, the client
    /// certificate the identity comes from (RFC 3080 4.1.3: an external
    /// service must be active), and for any mechanism, whether the
    /// credentials travelled encrypted.
    pub tls: Option<crate::tls::TlsInfo>,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("channel", &self.channel)
            .field("mechanism", &self.mechanism)
            .field("authcid", &self.authcid)
            .field("authzid", &self.authzid)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("anonymous_token", &self.anonymous_token)
            .field("server_name", &self.server_name)
            .field("need", &self.need)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The application's answer to an [`AuthRequest`].
///
/// Whatever the reason for a failure, the client only learns
/// "authentication failure" (535): never whether the user or the
/// password was wrong.
///
/// ```
/// use beep_proto::sasl::AuthAnswer;
/// assert!(!format!("{:?}", AuthAnswer::Secret("hunter2".into())).contains("hunter2"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum AuthAnswer {
    /// [`AuthNeed::Decide`]: the credentials are good, authenticate.
    Accept,
    /// Either need: refuse.
    Deny,
    /// [`AuthNeed::Secret`]: the user's password; the exchange succeeds
    /// if the client proves it knows it.
    Secret(String),
    /// Either need: there is no such user (SCRAM then plays its exchange
    /// to the end before failing, RFC 5802 5.1, so the client cannot tell
    /// an unknown user from a wrong password).
    NoSuchUser,
}

impl std::fmt::Debug for AuthAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthAnswer::Accept => f.write_str("Accept"),
            AuthAnswer::Deny => f.write_str("Deny"),
            AuthAnswer::Secret(_) => f.write_str("Secret(<redacted>)"),
            AuthAnswer::NoSuchUser => f.write_str("NoSuchUser"),
        }
    }
}

impl AuthAnswer {
    /// True if this answer fits `need`.
    pub(crate) fn fits(&self, need: AuthNeed) -> bool {
        match self {
            AuthAnswer::Deny | AuthAnswer::NoSuchUser => true,
            AuthAnswer::Accept => need == AuthNeed::Decide,
            AuthAnswer::Secret(_) => need == AuthNeed::Secret,
        }
    }
}

/// Who authenticated, as both sides report it
/// ([`Event::Authenticated`](crate::Event::Authenticated),
/// [`Session::authenticated`](crate::Session::authenticated)); RFC 3080 4:
/// it holds for every channel of the session, present and future.
///
/// ```
/// use beep_proto::sasl::{AuthInfo, Mechanism};
/// let info = AuthInfo { mechanism: Mechanism::Plain, authcid: "bob".into(), authzid: None };
/// assert_eq!(info.authcid, "bob");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// The mechanism that succeeded.
    pub mechanism: Mechanism,
    /// The authentication identity: the user name, `anonymous` for
    /// ANONYMOUS, empty for EXTERNAL (the external service knows it).
    pub authcid: String,
    /// The authorization identity, if one was asked for and granted.
    pub authzid: Option<String>,
}

/// Why a SASL exchange could not go on. The peer's faults end the
/// session as [`ProtocolError::Sasl`](crate::ProtocolError::Sasl) on the
/// client side (a listener answers a client's with an `<error>`); ours
/// are refused as [`UsageError::Sasl`](crate::UsageError::Sasl).
///
/// ```
/// use beep_proto::sasl::SaslError;
/// let e = SaslError::BlobTooLarge { len: 20_000, limit: 16_384 };
/// assert!(e.to_string().contains("16384"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// A `<blob>` or `<error>` that is not well formed, or a blob whose
    /// content is not base64 (RFC 3080 4.1.2).
    #[error("malformed SASL message (RFC 3080 4.1.2): {0}")]
    Malformed(XmlError),
    /// A blob larger than [`Config::max_sasl_blob`](crate::Config::max_sasl_blob).
    #[error("a SASL blob of {len} octets is larger than the limit of {limit}")]
    BlobTooLarge {
        /// Its size (decoded, or encoded when too large to decode).
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More challenges than [`Config::max_sasl_rounds`](crate::Config::max_sasl_rounds).
    #[error("more than {limit} SASL rounds")]
    TooManyRounds {
        /// The configured limit.
        limit: usize,
    },
    /// A message that has no place in the exchange (e.g. `abort` from
    /// the listener, ANS on a SASL channel).
    #[error("unexpected SASL message: {0}")]
    Unexpected(&'static str),
    /// The mechanism refused (rsasl's diagnostic): bad credentials of
    /// ours (an empty PLAIN user), or a peer's message it cannot use.
    #[error("SASL mechanism: {0}")]
    Mechanism(String),
}
