//! DIGEST-MD5 (RFC 2831) as an rsasl custom mechanism, authentication only.
//!
//! Only `qop=auth` (no integrity or confidentiality layer),
//! `charset=utf-8` and `algorithm=md5-sess`; no subsequent
//! authentication (every exchange starts with the server's challenge).
//! RFC 6331 moved DIGEST-MD5 to Historic: it is here for peers that
//! still use it.
//!
//! # Registering
//!
//! [`DIGEST_MD5`] is an `rsasl::registry::Mechanism` value, registered
//! like [`CRAM_MD5`](super::cram_md5::CRAM_MD5): in the `&'static` slice
//! given to `Registry::with_mechanisms`, passed to the config builder's
//! `with_registry`:
//!
//! ```rust,ignore
//! use rsasl::prelude::{Mechanism, Registry, SASLConfig};
//! use crate::sasl::{cram_md5::CRAM_MD5, digest_md5::DIGEST_MD5};
//!
//! static MECHANISMS: &[Mechanism] = &[
//!     rsasl::mechanisms::scram::SCRAM_SHA256,
//!     DIGEST_MD5,
//!     CRAM_MD5,
//!     rsasl::mechanisms::plain::PLAIN,
//! ];
//! let config = SASLConfig::builder()
//!     .with_registry(Registry::with_mechanisms(MECHANISMS))
//!     .with_callback(callback)?; // Arc<SASLConfig>, for SASLClient and SASLServer
//! ```
//!
//! The server goes first (`Side::Server`); rsasl client-side priority
//! 340 (above CRAM-MD5's 320 and PLAIN's 300, below SCRAM's 400 and more).
//!
//! # The exchange
//!
//! 1. Server: `realm="..",nonce="..",qop="auth",charset=utf-8,algorithm=md5-sess`
//!    (`realm` only when the callback gives one).
//! 2. Client: `charset=utf-8,username="..",realm="..",nonce="..",nc=00000001,
//!    cnonce="..",digest-uri="beep/<host>",response=<hex>,qop=auth[,authzid=".."]`.
//! 3. Server checks nonce, `nc=00000001`, `digest-uri`, realm, then the
//!    response against the password, calls `validate`, and finishes
//!    *with* a last message, `rspauth=<hex>` (`State::Finished(MessageSent::Yes)`:
//!    the BEEP SASL profile carries it in the `<blob status='complete'>`).
//! 4. Client checks `rspauth` (else `SessionError::MutualAuthenticationFailed`)
//!    and finishes without a message.
//!
//! The service name is always `beep` (RFC 3080 section 4.1), so the
//! digest-uri is `beep/<host>`, where `<host>` is the callback's
//! `Hostname` on either side (client: the server's name it connected to;
//! server: its own name), `localhost` when not given. The server compares
//! the host case-insensitively and accepts no `serv-name` part.
//!
//! # Properties asked of the callback
//!
//! Server, in this order:
//! 1. [`ServerNonce`] (empty context), step 1: the nonce; generated
//!    (16 random octets, base64) when not given.
//! 2. `Realm` (empty context), step 1: the realm offered; none when not
//!    given, and then the server accepts whatever realm the client uses.
//!    When one is offered the client's `realm` must equal it.
//! 3. `Hostname` (empty context), step 1: for the digest-uri check.
//! 4. `Password`, step 2, with `AuthId` (the `username`), `Realm` (the
//!    client's realm, `""` when it sent none) and, only when the client
//!    sent a non-empty `authzid`, `AuthzId` in the context. Not answering
//!    (unknown user) fails exactly like a wrong password.
//!
//! On success `validate` gets the same context as (4). A wrong password
//! or unknown user fails with [`DigestMd5Error::AuthenticationFailed`]
//! (`"authentication failed"`), which does not say which part was wrong;
//! protocol checks (nonce, nc, digest-uri, realm) fail before the
//! password is asked for, with their own errors.
//!
//! Client, when the challenge arrives (all with an empty context):
//! `AuthId`, `AuthzId` (optional), `Realm` (optional: else the first realm
//! the server offered, else none), `Hostname` (optional, default
//! `localhost`), `Password`. The client's cnonce is random.
//!
//! User names, realms and passwords are hashed as RFC 2831 and Cyrus SASL
//! do: each converted to ISO 8859-1 when all its characters fit, else
//! hashed as UTF-8 (the password as is when it is not UTF-8).
//!
//! # Determinism (replaying a server exchange)
//!
//! As for CRAM-MD5: the nonce goes out in step 1, the password is asked
//! for in step 2, so the server asks the callback for [`ServerNonce`]
//! first. Answer it with the same value for every run of one exchange and
//! a fresh one for each new exchange (1 to 256 characters, printable
//! ASCII without `"` or `\`). Unanswered, the nonce is random, and a
//! client response can never be accepted by another exchange: a replayed
//! response fails with [`DigestMd5Error::NonceMismatch`].

use super::cram_md5::{
    DEFAULT_HOST, ServerNonce, ct_eq, decode_hex16, hex_lower, requested_hostname, valid_hostname,
};
use base64::Engine as _;
use md5::{Digest as _, Md5};
use rand::RngCore;
use rsasl::mechanism::{
    Authentication, Demand, DemandReply, EmptyProvider, MechanismData, MechanismError,
    MechanismErrorKind, Provider,
};
use rsasl::mechname::Mechname;
use rsasl::prelude::{MessageSent, SASLConfig, SASLError, SessionError, State};
use rsasl::property::{AuthId, AuthzId, Password, Realm};
use rsasl::registry::{Matches, Mechanism, Named, Selection, Side};
use std::borrow::Cow;
use std::io::Write;

/// DIGEST-MD5 for rsasl: client and server, server goes first. See the
/// module documentation for how to register it.
pub(crate) const DIGEST_MD5: Mechanism = Mechanism::build(
    Mechname::const_new_unchecked(b"DIGEST-MD5"),
    340,
    Some(start_client),
    Some(start_server),
    Side::Server,
    select,
    offer,
);

fn start_client() -> Result<Box<dyn Authentication>, SASLError> {
    Ok(Box::new(DigestMd5Client {
        state: ClientState::Start,
    }))
}

fn start_server(_config: &SASLConfig) -> Result<Box<dyn Authentication>, SASLError> {
    Ok(Box::new(DigestMd5Server {
        state: ServerState::Start,
    }))
}

fn select(_channel_binding: bool) -> Option<Selection> {
    Some(Matches::<Select>::name())
}

fn offer(_channel_binding: bool) -> bool {
    true
}

struct Select;
impl Named for Select {
    fn mech() -> &'static Mechanism {
        &DIGEST_MD5
    }
}

/// The SASL service name of BEEP (RFC 3080 section 4.1).
const SERVICE: &str = "beep";
/// Longest challenge (RFC 2831 2.1.1), also the limit for `rspauth`.
const MAX_CHALLENGE_LEN: usize = 2048;
/// Longest response (RFC 2831 2.1.2).
const MAX_RESPONSE_LEN: usize = 4096;
/// Most directives in one message.
const MAX_DIRECTIVES: usize = 32;
/// Longest [`ServerNonce`] answer.
const MAX_NONCE_LEN: usize = 256;
/// Longest realm the server offers.
const MAX_REALM_LEN: usize = 256;
/// The only nonce count: every exchange has its own nonce.
const NONCE_COUNT: &str = "00000001";

/// A syntax error in a list of RFC 2831 directives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DirectiveError {
    /// Something other than a token where a directive name belongs.
    #[error("expected a directive name at octet {0}")]
    ExpectedName(usize),
    /// A name not followed by `=`.
    #[error("expected '=' at octet {0}")]
    ExpectedEquals(usize),
    /// `=` followed by neither a token nor a quoted string.
    #[error("expected a value at octet {0}")]
    ExpectedValue(usize),
    /// A value followed by something other than `,`.
    #[error("expected ',' at octet {0}")]
    ExpectedComma(usize),
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A backslash escaping nothing or a non-ASCII octet.
    #[error("invalid escape at octet {0}")]
    InvalidEscape(usize),
    /// A control character inside a quoted string.
    #[error("control character at octet {0}")]
    ControlCharacter(usize),
    /// More directives than accepted.
    #[error("more than {MAX_DIRECTIVES} directives")]
    TooManyDirectives,
}

/// What can go wrong in a DIGEST-MD5 exchange, besides the callback's and
/// rsasl's own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DigestMd5Error {
    /// A message longer than RFC 2831 allows.
    #[error("DIGEST-MD5 message longer than {max} octets")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A message that is not UTF-8.
    #[error("DIGEST-MD5 message is not UTF-8")]
    NotUtf8,
    /// A message that is not a list of directives.
    #[error("malformed DIGEST-MD5 message: {0}")]
    Syntax(#[from] DirectiveError),
    /// A directive given twice.
    #[error("DIGEST-MD5 directive {0} given more than once")]
    Duplicate(String),
    /// A required directive missing.
    #[error("DIGEST-MD5 directive {0} missing")]
    Missing(&'static str),
    /// A directive with a value of the wrong form.
    #[error("invalid value of DIGEST-MD5 directive {0}")]
    InvalidValue(&'static str),
    /// A qop, charset or algorithm other than auth, utf-8 and md5-sess.
    #[error("unsupported DIGEST-MD5 {0} (only qop=auth, charset=utf-8, algorithm=md5-sess)")]
    Unsupported(&'static str),
    /// The client sent data with its first message; the server goes first.
    #[error("DIGEST-MD5 takes no initial response")]
    UnexpectedInitialResponse,
    /// The response answers another nonce (a replay, or a stale one).
    #[error("DIGEST-MD5 response is for another nonce")]
    NonceMismatch,
    /// A nonce count other than 00000001.
    #[error("DIGEST-MD5 nonce count must be 00000001")]
    NonceCount,
    /// A digest-uri other than `beep/<this host>`.
    #[error("DIGEST-MD5 digest-uri does not name this service and host")]
    DigestUri,
    /// A realm other than the one the server offered.
    #[error("DIGEST-MD5 realm was not offered")]
    Realm,
    /// The callback's [`ServerNonce`] is empty, too long or has characters
    /// a nonce cannot have.
    #[error("invalid DIGEST-MD5 nonce given by the callback")]
    InvalidServerNonce,
    /// The callback's `Hostname` is empty, too long or not a plain name.
    #[error("invalid host name given by the callback")]
    InvalidHostname,
    /// A user name, authorization identity or realm (from the callback)
    /// that is empty where it must not be or contains control characters.
    #[error("invalid DIGEST-MD5 {0} given by the callback")]
    InvalidIdentity(&'static str),
    /// Unknown user or wrong password (deliberately not saying which).
    #[error("authentication failed")]
    AuthenticationFailed,
}

impl MechanismError for DigestMd5Error {
    fn kind(&self) -> MechanismErrorKind {
        match self {
            Self::TooLong { .. }
            | Self::NotUtf8
            | Self::Syntax(_)
            | Self::Duplicate(_)
            | Self::Missing(_)
            | Self::InvalidValue(_) => MechanismErrorKind::Parse,
            Self::AuthenticationFailed => MechanismErrorKind::Outcome,
            Self::Unsupported(_)
            | Self::UnexpectedInitialResponse
            | Self::NonceMismatch
            | Self::NonceCount
            | Self::DigestUri
            | Self::Realm
            | Self::InvalidServerNonce
            | Self::InvalidHostname
            | Self::InvalidIdentity(_) => MechanismErrorKind::Protocol,
        }
    }
}

/// Parsed directives: lower-cased names and unquoted values, in order.
struct Directives(Vec<(String, String)>);

impl Directives {
    /// Parses `input` (at most `max` octets) as RFC 2831 directives:
    /// `name=token` or `name="quoted string"`, separated by commas and
    /// optional white space, empty list elements allowed.
    fn parse(input: &[u8], max: usize) -> Result<Self, DigestMd5Error> {
        if input.len() > max {
            return Err(DigestMd5Error::TooLong { max });
        }
        if std::str::from_utf8(input).is_err() {
            return Err(DigestMd5Error::NotUtf8);
        }
        let mut list = Vec::new();
        let mut at = 0;
        loop {
            while input.get(at).is_some_and(|&b| b == b',' || is_space(b)) {
                at += 1;
            }
            if at >= input.len() {
                break;
            }
            if list.len() == MAX_DIRECTIVES {
                return Err(DirectiveError::TooManyDirectives.into());
            }
            let name = token(input, &mut at).ok_or(DirectiveError::ExpectedName(at))?;
            skip_space(input, &mut at);
            if input.get(at) != Some(&b'=') {
                return Err(DirectiveError::ExpectedEquals(at).into());
            }
            at += 1;
            skip_space(input, &mut at);
            let value = if input.get(at) == Some(&b'"') {
                at += 1;
                quoted(input, &mut at)?
            } else {
                token(input, &mut at).ok_or(DirectiveError::ExpectedValue(at))?
            };
            skip_space(input, &mut at);
            if at < input.len() && input.get(at) != Some(&b',') {
                return Err(DirectiveError::ExpectedComma(at).into());
            }
            list.push((name.to_ascii_lowercase(), value));
        }
        Ok(Self(list))
    }

    /// The value of `name`, which may appear at most once.
    fn unique(&self, name: &'static str) -> Result<Option<&str>, DigestMd5Error> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(DigestMd5Error::Duplicate(name.to_owned()));
        }
        Ok(first)
    }

    /// The value of `name`, which must appear exactly once.
    fn required(&self, name: &'static str) -> Result<&str, DigestMd5Error> {
        self.unique(name)?.ok_or(DigestMd5Error::Missing(name))
    }

    /// Fails on the first directive given twice.
    fn no_duplicates(&self) -> Result<(), DigestMd5Error> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if self.0.iter().skip(i + 1).any(|(n, _)| n == name) {
                return Err(DigestMd5Error::Duplicate(name.clone()));
            }
        }
        Ok(())
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_space(input: &[u8], at: &mut usize) {
    while input.get(*at).copied().is_some_and(is_space) {
        *at += 1;
    }
}

/// An RFC 2616 token: ASCII, no controls, no separators.
fn token(input: &[u8], at: &mut usize) -> Option<String> {
    let start = *at;
    while input
        .get(*at)
        .is_some_and(|&b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    {
        *at += 1;
    }
    let bytes = input.get(start..*at)?;
    if bytes.is_empty() {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

/// The rest of a quoted string whose opening quote is consumed.
fn quoted(input: &[u8], at: &mut usize) -> Result<String, DigestMd5Error> {
    let mut value = Vec::new();
    loop {
        let Some(&b) = input.get(*at) else {
            return Err(DirectiveError::UnterminatedQuote.into());
        };
        match b {
            b'"' => {
                *at += 1;
                break;
            }
            b'\\' => {
                match input.get(*at + 1) {
                    Some(&e) if e.is_ascii() => value.push(e),
                    _ => return Err(DirectiveError::InvalidEscape(*at).into()),
                }
                *at += 2;
            }
            b'\t' | b'\r' | b'\n' => {
                value.push(b);
                *at += 1;
            }
            _ if b.is_ascii_control() => {
                return Err(DirectiveError::ControlCharacter(*at).into());
            }
            _ => {
                value.push(b);
                *at += 1;
            }
        }
    }
    String::from_utf8(value).map_err(|_| DigestMd5Error::NotUtf8)
}

/// Appends `name="value"`, escaping `"` and `\`.
fn push_quoted(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends `name=token`.
fn push_token(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push('=');
    out.push_str(value);
}

/// Everything `response` and `rspauth` are computed from (RFC 2831 2.1.2.1).
/// (No `Debug`: it holds the password.)
#[derive(Clone, Copy)]
pub(crate) struct DigestInput<'a> {
    pub username: &'a str,
    /// `""` when the client sent no realm.
    pub realm: &'a str,
    pub password: &'a [u8],
    pub nonce: &'a str,
    pub cnonce: &'a str,
    pub nc: &'a str,
    pub qop: &'a str,
    pub digest_uri: &'a str,
    pub authzid: Option<&'a str>,
}

impl DigestInput<'_> {
    /// The client's `response` value (A2 starts with `AUTHENTICATE:`).
    pub(crate) fn response(&self) -> [u8; 16] {
        self.kd(b"AUTHENTICATE:")
    }

    /// The server's `rspauth` value (A2 starts with `:`).
    pub(crate) fn rspauth(&self) -> [u8; 16] {
        self.kd(b":")
    }

    /// H(A1), A1 = { H(user:realm:password), ":", nonce, ":", cnonce [":", authzid] }.
    fn ha1(&self) -> [u8; 16] {
        let mut inner = Md5::new();
        inner.update(iso_8859_1_if_possible(self.username.as_bytes()));
        inner.update(b":");
        inner.update(iso_8859_1_if_possible(self.realm.as_bytes()));
        inner.update(b":");
        inner.update(iso_8859_1_if_possible(self.password));
        let mut a1 = Md5::new();
        a1.update(inner.finalize());
        a1.update(b":");
        a1.update(self.nonce);
        a1.update(b":");
        a1.update(self.cnonce);
        if let Some(authzid) = self.authzid {
            a1.update(b":");
            a1.update(authzid);
        }
        a1.finalize().into()
    }

    /// HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2)))), unhexed.
    fn kd(&self, a2_prefix: &[u8]) -> [u8; 16] {
        let mut a2 = Md5::new();
        a2.update(a2_prefix);
        a2.update(self.digest_uri);
        let mut kd = Md5::new();
        kd.update(hex_lower(&self.ha1()));
        for part in [self.nonce, self.nc, self.cnonce, self.qop] {
            kd.update(b":");
            kd.update(part);
        }
        kd.update(b":");
        kd.update(hex_lower(&a2.finalize()));
        kd.finalize().into()
    }
}

/// UTF-8 text whose characters all fit in ISO 8859-1, converted to it;
/// anything else unchanged.
fn iso_8859_1_if_possible(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Cow::Borrowed(bytes);
    };
    if text.is_ascii() {
        return Cow::Borrowed(bytes);
    }
    let latin: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
    latin.map_or(Cow::Borrowed(bytes), Cow::Owned)
}

/// A fresh random nonce: 16 octets, base64 without padding.
fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A string fit for a quoted-string from the callback: no control
/// characters.
fn plain_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The context of the server's `Password` request and of `validate`.
struct Identity<'a> {
    authid: &'a str,
    realm: &'a str,
    authzid: Option<&'a str>,
}

impl<'a> Provider<'a> for Identity<'a> {
    fn provide(&self, req: &mut Demand<'a>) -> DemandReply<()> {
        req.provide_ref::<AuthId>(self.authid)?
            .provide_ref::<Realm>(self.realm)?;
        if let Some(authzid) = self.authzid {
            req.provide_ref::<AuthzId>(authzid)?;
        }
        req.done()
    }
}

enum ServerState {
    Start,
    WaitResponse {
        nonce: String,
        realm: Option<String>,
        host: String,
    },
    Done,
}

/// The server side.
struct DigestMd5Server {
    state: ServerState,
}

impl Authentication for DigestMd5Server {
    fn step(
        &mut self,
        session: &mut MechanismData,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Start => {
                if input.is_some_and(|i| !i.is_empty()) {
                    return Err(DigestMd5Error::UnexpectedInitialResponse.into());
                }
                let (challenge, next) = server_challenge(session)?;
                writer.write_all(challenge.as_bytes())?;
                self.state = next;
                Ok(State::Running)
            }
            ServerState::WaitResponse { nonce, realm, host } => {
                let input = match input {
                    Some(i) if !i.is_empty() => i,
                    _ => {
                        self.state = ServerState::WaitResponse { nonce, realm, host };
                        return Err(SessionError::InputDataRequired);
                    }
                };
                let rspauth = check_response(session, input, &nonce, realm.as_deref(), &host)?;
                writer.write_all(b"rspauth=")?;
                writer.write_all(hex_lower(&rspauth).as_bytes())?;
                Ok(State::Finished(MessageSent::Yes))
            }
            ServerState::Done => Err(SessionError::MechanismDone),
        }
    }
}

/// Step 1: asks for nonce, realm and host name; builds the challenge.
fn server_challenge(session: &MechanismData) -> Result<(String, ServerState), SessionError> {
    let nonce = session.maybe_need_with::<ServerNonce, _, _>(&EmptyProvider, |nonce| {
        let fit = nonce
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !fit {
            return Err(DigestMd5Error::InvalidServerNonce.into());
        }
        Ok(nonce.to_owned())
    })?;
    let nonce = nonce.unwrap_or_else(random_nonce);
    let realm = session.maybe_need_with::<Realm, _, _>(&EmptyProvider, |realm| {
        if realm.len() > MAX_REALM_LEN || !plain_text(realm) {
            return Err(DigestMd5Error::InvalidIdentity("realm").into());
        }
        Ok(realm.to_owned())
    })?;
    let host = requested_hostname(session)?.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    if !valid_hostname(&host) {
        return Err(DigestMd5Error::InvalidHostname.into());
    }
    let mut challenge = String::new();
    if let Some(realm) = &realm {
        push_quoted(&mut challenge, "realm", realm);
    }
    push_quoted(&mut challenge, "nonce", &nonce);
    push_quoted(&mut challenge, "qop", "auth");
    push_token(&mut challenge, "charset", "utf-8");
    push_token(&mut challenge, "algorithm", "md5-sess");
    Ok((challenge, ServerState::WaitResponse { nonce, realm, host }))
}

/// A client response, parsed and checked for form.
#[derive(Debug)]
struct Response {
    username: String,
    realm: Option<String>,
    nonce: String,
    cnonce: String,
    nc: String,
    digest_uri: String,
    response: [u8; 16],
    authzid: Option<String>,
}

impl Response {
    fn parse(input: &[u8]) -> Result<Self, DigestMd5Error> {
        let d = Directives::parse(input, MAX_RESPONSE_LEN)?;
        d.no_duplicates()?;
        if d.unique("qop")?.is_some_and(|q| q != "auth") {
            return Err(DigestMd5Error::Unsupported("qop"));
        }
        let utf8 = match d.unique("charset")? {
            None => false,
            Some(c) if c.eq_ignore_ascii_case("utf-8") => true,
            Some(_) => return Err(DigestMd5Error::Unsupported("charset")),
        };
        let username = d.required("username")?.to_owned();
        let realm = d.unique("realm")?.map(str::to_owned);
        // Without charset=utf-8 the strings are ISO 8859-1: only ASCII is
        // the same in both.
        let ascii = username.is_ascii() && realm.as_deref().is_none_or(str::is_ascii);
        if !(utf8 || ascii) {
            return Err(DigestMd5Error::Unsupported("charset"));
        }
        if username.is_empty() {
            return Err(DigestMd5Error::InvalidValue("username"));
        }
        let nonce = d.required("nonce")?.to_owned();
        let cnonce = d.required("cnonce")?.to_owned();
        if cnonce.is_empty() {
            return Err(DigestMd5Error::InvalidValue("cnonce"));
        }
        let nc = d.required("nc")?.to_owned();
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestMd5Error::InvalidValue("nc"));
        }
        let digest_uri = d.required("digest-uri")?.to_owned();
        let response = decode_hex16(d.required("response")?.as_bytes())
            .ok_or(DigestMd5Error::InvalidValue("response"))?;
        let authzid = d
            .unique("authzid")?
            .filter(|z| !z.is_empty())
            .map(str::to_owned);
        Ok(Self {
            username,
            realm,
            nonce,
            cnonce,
            nc,
            digest_uri,
            response,
            authzid,
        })
    }
}

/// Step 2: checks the client's response; returns `rspauth` on success.
fn check_response(
    session: &mut MechanismData,
    input: &[u8],
    nonce: &str,
    realm: Option<&str>,
    host: &str,
) -> Result<[u8; 16], SessionError> {
    let r = Response::parse(input)?;
    if r.nonce != nonce {
        return Err(DigestMd5Error::NonceMismatch.into());
    }
    if r.nc != NONCE_COUNT {
        return Err(DigestMd5Error::NonceCount.into());
    }
    let uri_ok = r
        .digest_uri
        .split_once('/')
        .is_some_and(|(service, h)| service == SERVICE && h.eq_ignore_ascii_case(host));
    if !uri_ok {
        return Err(DigestMd5Error::DigestUri.into());
    }
    let client_realm = r.realm.as_deref().unwrap_or("");
    if realm.is_some_and(|offered| offered != client_realm) {
        return Err(DigestMd5Error::Realm.into());
    }
    let identity = Identity {
        authid: &r.username,
        realm: client_realm,
        authzid: r.authzid.as_deref(),
    };
    let digests = session.maybe_need_with::<Password, _, _>(&identity, |password| {
        let input = DigestInput {
            username: &r.username,
            realm: client_realm,
            password,
            nonce,
            cnonce: &r.cnonce,
            nc: &r.nc,
            qop: "auth",
            digest_uri: &r.digest_uri,
            authzid: r.authzid.as_deref(),
        };
        Ok((input.response(), input.rspauth()))
    })?;
    let rspauth = match digests {
        Some((expected, rspauth)) if ct_eq(&expected, &r.response) => rspauth,
        _ => return Err(DigestMd5Error::AuthenticationFailed.into()),
    };
    session.validate(&identity)?;
    Ok(rspauth)
}

/// A server challenge, parsed and checked.
#[derive(Debug)]
struct Challenge {
    realms: Vec<String>,
    nonce: String,
}

impl Challenge {
    fn parse(input: &[u8]) -> Result<Self, DigestMd5Error> {
        let d = Directives::parse(input, MAX_CHALLENGE_LEN)?;
        for once in [
            "nonce",
            "qop",
            "charset",
            "algorithm",
            "stale",
            "maxbuf",
            "cipher",
        ] {
            d.unique(once)?;
        }
        let nonce = d.required("nonce")?.to_owned();
        if nonce.is_empty() {
            return Err(DigestMd5Error::InvalidValue("nonce"));
        }
        // qop-options is a quoted list; absent means "auth".
        if let Some(qop) = d.unique("qop")?
            && !qop.split(',').any(|q| q.trim() == "auth")
        {
            return Err(DigestMd5Error::Unsupported("qop"));
        }
        match d.unique("charset")? {
            Some(c) if c.eq_ignore_ascii_case("utf-8") => {}
            _ => return Err(DigestMd5Error::Unsupported("charset")),
        }
        if !d.required("algorithm")?.eq_ignore_ascii_case("md5-sess") {
            return Err(DigestMd5Error::Unsupported("algorithm"));
        }
        let realms =
            d.0.iter()
                .filter(|(n, _)| n == "realm")
                .map(|(_, v)| v.clone())
                .collect();
        Ok(Self { realms, nonce })
    }
}

enum ClientState {
    Start,
    WaitRspauth { expected: [u8; 16] },
    Done,
}

/// The client side.
struct DigestMd5Client {
    state: ClientState,
}

impl Authentication for DigestMd5Client {
    fn step(
        &mut self,
        session: &mut MechanismData,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        let Some(input) = input.filter(|i| !i.is_empty()) else {
            return match self.state {
                ClientState::Done => Err(SessionError::MechanismDone),
                _ => Err(SessionError::InputDataRequired),
            };
        };
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::Start => {
                let challenge = Challenge::parse(input)?;
                let (response, expected) = client_response(session, &challenge)?;
                writer.write_all(response.as_bytes())?;
                self.state = ClientState::WaitRspauth { expected };
                Ok(State::Running)
            }
            ClientState::WaitRspauth { expected } => {
                let d = Directives::parse(input, MAX_CHALLENGE_LEN)?;
                let rspauth = decode_hex16(d.required("rspauth")?.as_bytes())
                    .ok_or(DigestMd5Error::InvalidValue("rspauth"))?;
                if !ct_eq(&rspauth, &expected) {
                    return Err(SessionError::MutualAuthenticationFailed);
                }
                Ok(State::Finished(MessageSent::No))
            }
            ClientState::Done => Err(SessionError::MechanismDone),
        }
    }
}

/// Step 1 of the client: asks for the identity and password; returns the
/// response and the `rspauth` to expect.
fn client_response(
    session: &MechanismData,
    challenge: &Challenge,
) -> Result<(String, [u8; 16]), SessionError> {
    let text = |what: &'static str, s: &str, empty_ok: bool| {
        if (s.is_empty() && !empty_ok) || !plain_text(s) {
            Err(SessionError::from(DigestMd5Error::InvalidIdentity(what)))
        } else {
            Ok(s.to_owned())
        }
    };
    let authid =
        session.need_with::<AuthId, _, _>(&EmptyProvider, |a| text("username", a, false))?;
    let authzid = session
        .maybe_need_with::<AuthzId, _, _>(&EmptyProvider, |z| text("authzid", z, true))?
        .filter(|z| !z.is_empty());
    let realm =
        session.maybe_need_with::<Realm, _, _>(&EmptyProvider, |r| text("realm", r, true))?;
    let realm = realm.or_else(|| challenge.realms.first().cloned());
    let host = requested_hostname(session)?.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    if !valid_hostname(&host) {
        return Err(DigestMd5Error::InvalidHostname.into());
    }
    let digest_uri = format!("{SERVICE}/{host}");
    let cnonce = random_nonce();
    let (response, rspauth) = session.need_with::<Password, _, _>(&EmptyProvider, |password| {
        let input = DigestInput {
            username: &authid,
            realm: realm.as_deref().unwrap_or(""),
            password,
            nonce: &challenge.nonce,
            cnonce: &cnonce,
            nc: NONCE_COUNT,
            qop: "auth",
            digest_uri: &digest_uri,
            authzid: authzid.as_deref(),
        };
        Ok((input.response(), input.rspauth()))
    })?;
    let mut out = String::new();
    push_token(&mut out, "charset", "utf-8");
    push_quoted(&mut out, "username", &authid);
    if let Some(realm) = realm.as_deref().filter(|r| !r.is_empty()) {
        push_quoted(&mut out, "realm", realm);
    }
    push_quoted(&mut out, "nonce", &challenge.nonce);
    push_token(&mut out, "nc", NONCE_COUNT);
    push_quoted(&mut out, "cnonce", &cnonce);
    push_quoted(&mut out, "digest-uri", &digest_uri);
    push_token(&mut out, "response", &hex_lower(&response));
    push_token(&mut out, "qop", "auth");
    if let Some(authzid) = &authzid {
        push_quoted(&mut out, "authzid", authzid);
    }
    Ok((out, rspauth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::cram_md5::tests::{Seen, TestCallback, config, mech_error};
    use rsasl::prelude::{SASLClient, SASLServer, Session};
    use rsasl::validate::Validation;
    use std::sync::Arc;

    const RFC_CHALLENGE: &str = "realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",qop=\"auth\",algorithm=md5-sess,charset=utf-8";
    const RFC_RESPONSE: &str = "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\",digest-uri=\"imap/elwood.innosoft.com\",response=d388dad90d4bbd760a152321f2143af7,qop=auth";

    static MECHANISMS: &[Mechanism] = &[DIGEST_MD5];

    fn server(callback: Arc<TestCallback>) -> Session<Seen> {
        SASLServer::<Seen>::new(config(MECHANISMS, callback))
            .start_suggested(Mechname::parse(b"DIGEST-MD5").unwrap())
            .unwrap()
    }

    fn client(callback: Arc<TestCallback>) -> Session {
        SASLClient::new(config(MECHANISMS, callback))
            .start_suggested(&[Mechname::parse(b"DIGEST-MD5").unwrap()])
            .unwrap()
    }

    fn chris_server() -> TestCallback {
        TestCallback {
            users: vec![("chris", "secret")],
            ..TestCallback::default()
        }
    }

    fn chris_client(password: &'static str) -> TestCallback {
        TestCallback {
            authid: "chris",
            password,
            ..TestCallback::default()
        }
    }

    fn step(session: &mut Session<impl Validation>, input: Option<&[u8]>) -> (State, Vec<u8>) {
        let mut out = Vec::new();
        let state = session.step(input, &mut out).unwrap();
        (state, out)
    }

    fn step_err(session: &mut Session<impl Validation>, input: &[u8]) -> SessionError {
        session.step(Some(input), &mut Vec::new()).unwrap_err()
    }

    fn typed(error: &SessionError) -> &DigestMd5Error {
        mech_error::<DigestMd5Error>(error).unwrap_or_else(|| panic!("not typed: {error}"))
    }

    #[test]
    fn rfc2831_example_digests() {
        let input = DigestInput {
            username: "chris",
            realm: "elwood.innosoft.com",
            password: b"secret",
            nonce: "OA6MG9tEQGm2hh",
            cnonce: "OA6MHXh6VqTrRk",
            nc: "00000001",
            qop: "auth",
            digest_uri: "imap/elwood.innosoft.com",
            authzid: None,
        };
        assert_eq!(
            hex_lower(&input.response()),
            "d388dad90d4bbd760a152321f2143af7"
        );
        assert_eq!(
            hex_lower(&input.rspauth()),
            "ea40f60335c427b5527b84dbabcdfffd"
        );
    }

    #[test]
    fn rfc2831_example_messages_parse() {
        let c = Challenge::parse(RFC_CHALLENGE.as_bytes()).unwrap();
        assert_eq!(c.realms, ["elwood.innosoft.com"]);
        assert_eq!(c.nonce, "OA6MG9tEQGm2hh");

        let r = Response::parse(RFC_RESPONSE.as_bytes()).unwrap();
        let input = DigestInput {
            username: &r.username,
            realm: r.realm.as_deref().unwrap(),
            password: b"secret",
            nonce: &r.nonce,
            cnonce: &r.cnonce,
            nc: &r.nc,
            qop: "auth",
            digest_uri: &r.digest_uri,
            authzid: None,
        };
        assert_eq!(input.response(), r.response);
    }

    /// Runs a whole exchange; returns the server session, the messages.
    fn exchange(
        server_cb: Arc<TestCallback>,
        client_cb: Arc<TestCallback>,
    ) -> (Session<Seen>, Vec<u8>, Vec<u8>) {
        let mut server = server(server_cb);
        let mut client = client(client_cb);
        assert!(server.are_we_first());
        let (state, challenge) = step(&mut server, None);
        assert_eq!(state, State::Running);
        let (state, response) = step(&mut client, Some(&challenge));
        assert_eq!(state, State::Running);
        let (state, rspauth) = step(&mut server, Some(&response));
        assert_eq!(state, State::Finished(MessageSent::Yes));
        assert!(rspauth.starts_with(b"rspauth="));
        let (state, last) = step(&mut client, Some(&rspauth));
        assert_eq!(state, State::Finished(MessageSent::No));
        assert!(last.is_empty());
        (server, challenge, response)
    }

    #[test]
    fn full_exchange_through_rsasl() {
        let server_cb = Arc::new(chris_server());
        let client_cb = Arc::new(chris_client("secret"));
        let (mut server, challenge, response) = exchange(server_cb.clone(), client_cb.clone());
        let challenge = String::from_utf8(challenge).unwrap();
        assert!(challenge.starts_with("nonce=\""), "{challenge}");
        assert!(
            challenge.ends_with("\",qop=\"auth\",charset=utf-8,algorithm=md5-sess"),
            "{challenge}"
        );
        let response = String::from_utf8(response).unwrap();
        assert!(
            response.contains("digest-uri=\"beep/localhost\""),
            "{response}"
        );
        assert!(!response.contains("realm="), "{response}");
        assert_eq!(server.validation(), Some((Some("chris".into()), None)));
        assert_eq!(
            server_cb.asked(),
            [
                "ServerNonce",
                "Realm",
                "Hostname",
                "Password(AuthId=chris,Realm=)"
            ]
        );
        assert_eq!(
            client_cb.asked(),
            ["AuthId", "AuthzId", "Realm", "Hostname", "Password"]
        );
    }

    #[test]
    fn realm_host_and_authzid() {
        let server_cb = Arc::new(TestCallback {
            realm: Some("example.org"),
            hostname: Some("beep.example.org"),
            ..chris_server()
        });
        let client_cb = Arc::new(TestCallback {
            authzid: Some("admin"),
            hostname: Some("BEEP.example.org"),
            ..chris_client("secret")
        });
        let (mut server, challenge, response) = exchange(server_cb.clone(), client_cb);
        assert!(challenge.starts_with(b"realm=\"example.org\",nonce=\""));
        let response = String::from_utf8(response).unwrap();
        assert!(response.contains("realm=\"example.org\""), "{response}");
        assert!(response.contains("digest-uri=\"beep/BEEP.example.org\""));
        assert!(response.ends_with(",authzid=\"admin\""), "{response}");
        assert_eq!(
            server.validation(),
            Some((Some("chris".into()), Some("admin".into())))
        );
        assert_eq!(
            server_cb.asked().last().unwrap(),
            "Password(AuthId=chris,AuthzId=admin,Realm=example.org)"
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let mut server1 = server(Arc::new(chris_server()));
        let (_, challenge) = step(&mut server1, None);
        let (_, response) = step(
            &mut client(Arc::new(chris_client("secreT"))),
            Some(&challenge),
        );
        let e1 = step_err(&mut server1, &response);
        assert!(matches!(typed(&e1), DigestMd5Error::AuthenticationFailed));
        assert_eq!(server1.validation(), None);

        let mut server2 = server(Arc::new(chris_server()));
        let (_, challenge) = step(&mut server2, None);
        let stranger = Arc::new(TestCallback {
            authid: "chrys",
            password: "secret",
            ..TestCallback::default()
        });
        let (_, response) = step(&mut client(stranger), Some(&challenge));
        let e2 = step_err(&mut server2, &response);
        assert_eq!(e1.to_string(), e2.to_string());
        assert_eq!(
            e1.to_string(),
            "internal mechanism error: authentication failed"
        );
    }

    #[test]
    fn replayed_response_fails_with_fresh_nonce() {
        let (_, _, response) = exchange(Arc::new(chris_server()), Arc::new(chris_client("secret")));
        let mut again = server(Arc::new(chris_server()));
        step(&mut again, None);
        let e = step_err(&mut again, &response);
        assert!(matches!(typed(&e), DigestMd5Error::NonceMismatch));
        assert_eq!(again.validation(), None);
    }

    #[test]
    fn same_server_nonce_allows_replaying_the_exchange() {
        let server_cb = || {
            Arc::new(TestCallback {
                nonce: Some("fixed+nonce/1".into()),
                ..chris_server()
            })
        };
        let (_, challenge, response) = exchange(server_cb(), Arc::new(chris_client("secret")));
        assert!(challenge.starts_with(b"nonce=\"fixed+nonce/1\""));
        let mut replay = server(server_cb());
        let (_, challenge2) = step(&mut replay, None);
        assert_eq!(challenge, challenge2);
        let (state, _) = step(&mut replay, Some(&response));
        assert!(state.is_finished());
        assert_eq!(replay.validation(), Some((Some("chris".into()), None)));
    }

    #[test]
    fn protocol_checks() {
        let good_server = || {
            Arc::new(TestCallback {
                nonce: Some("N".into()),
                realm: Some("r"),
                ..chris_server()
            })
        };
        let base = "charset=utf-8,username=\"chris\",realm=\"r\",nonce=\"N\",nc=00000001,cnonce=\"c\",digest-uri=\"beep/localhost\",response=00000000000000000000000000000000,qop=auth";
        let cases = [
            (base.replace("nc=00000001", "nc=00000002"), "nonce count"),
            (
                base.replace("beep/localhost", "imap/localhost"),
                "digest-uri",
            ),
            (base.replace("beep/localhost", "beep/other"), "digest-uri"),
            (
                base.replace("beep/localhost", "beep/localhost/x"),
                "digest-uri",
            ),
            (base.replace("realm=\"r\"", "realm=\"s\""), "realm"),
            (base.replace("nonce=\"N\"", "nonce=\"M\""), "another nonce"),
            (base.to_owned(), "authentication failed"),
        ];
        for (response, expected) in cases {
            let mut server = server(good_server());
            step(&mut server, None);
            let e = step_err(&mut server, response.as_bytes());
            assert!(e.to_string().contains(expected), "{response}: {e}");
        }
    }

    #[test]
    fn malformed_directives_fail() {
        let bad: &[&[u8]] = &[
            b"username=\"chris",
            b"username",
            b"username=",
            b"=x",
            b"username=\"a\"b",
            b"username=\"a\\\xc3\xa9\"",
            b"username=\"a\x01b\"",
            b"user name=x",
            b"\xff=x",
        ];
        for input in bad {
            let e = Directives::parse(input, MAX_RESPONSE_LEN).err();
            assert!(
                matches!(e, Some(DigestMd5Error::Syntax(_) | DigestMd5Error::NotUtf8)),
                "{input:?}: {e:?}"
            );
        }
        let many = "a=b,".repeat(MAX_DIRECTIVES + 1);
        assert!(matches!(
            Directives::parse(many.as_bytes(), MAX_RESPONSE_LEN),
            Err(DigestMd5Error::Syntax(DirectiveError::TooManyDirectives))
        ));
        // Escapes, white space, empty elements and case of names are fine.
        let d = Directives::parse(b" , A = \"x\\\"y\\\\z\" ,, b=tok ,", 100).unwrap();
        assert_eq!(
            d.0,
            [("a".into(), "x\"y\\z".into()), ("b".into(), "tok".into())]
        );

        let base = RFC_RESPONSE;
        let responses = [
            format!("{base},nonce=\"again\""),
            base.replace("qop=auth", "qop=auth-int"),
            base.replace("charset=utf-8", "charset=iso-8859-1"),
            base.replace(",nc=00000001", ""),
            base.replace("nc=00000001", "nc=1"),
            base.replace("response=d388", "response=z388"),
            base.replace("username=\"chris\"", "username=\"\""),
            base.replace(
                "charset=utf-8,username=\"chris\"",
                "username=\"chr\u{e9}s\"",
            ),
            "x".repeat(MAX_RESPONSE_LEN + 1),
            base.replace("cnonce=\"OA6MHXh6VqTrRk\"", "cnonce=\"OA6MHXh6VqTrRk"),
        ];
        for response in &responses {
            let e = Response::parse(response.as_bytes()).unwrap_err();
            assert!(
                !matches!(e, DigestMd5Error::AuthenticationFailed),
                "{response}"
            );
            // And through rsasl: a typed error, no validation.
            let mut server = server(Arc::new(chris_server()));
            step(&mut server, None);
            let e = step_err(&mut server, response.as_bytes());
            typed(&e);
            assert_eq!(server.validation(), None);
        }
    }

    #[test]
    fn client_checks_the_challenge() {
        let bad = [
            "nonce=\"a\",nonce=\"b\",charset=utf-8,algorithm=md5-sess",
            "realm=\"r\",charset=utf-8,algorithm=md5-sess",
            "nonce=\"a\",qop=\"auth-int,auth-conf\",charset=utf-8,algorithm=md5-sess",
            "nonce=\"a\",algorithm=md5-sess",
            "nonce=\"a\",charset=utf-8,algorithm=md5",
            "nonce=\"a\",charset=utf-8",
            "nonce=\"a,charset=utf-8,algorithm=md5-sess",
        ];
        for challenge in bad {
            let mut client = client(Arc::new(chris_client("secret")));
            let e = step_err(&mut client, challenge.as_bytes());
            typed(&e);
        }
        // Several realms: the first is used; qop lists are fine.
        let mut client = client(Arc::new(chris_client("secret")));
        let (_, out) = step(
            &mut client,
            Some(b"realm=\"one\",realm=\"two\",nonce=\"n\",qop=\"auth-int, auth\",charset=utf-8,algorithm=md5-sess,stale=true,x-ext=1"),
        );
        assert!(String::from_utf8(out).unwrap().contains("realm=\"one\""));
        assert!(matches!(
            client.step(None, &mut Vec::new()),
            Err(SessionError::InputDataRequired)
        ));
    }

    #[test]
    fn client_rejects_wrong_rspauth() {
        let mut server = server(Arc::new(chris_server()));
        let mut client = client(Arc::new(chris_client("secret")));
        let (_, challenge) = step(&mut server, None);
        let (_, response) = step(&mut client, Some(&challenge));
        step(&mut server, Some(&response));
        let e = step_err(&mut client, b"rspauth=ea40f60335c427b5527b84dbabcdfffd");
        assert!(matches!(e, SessionError::MutualAuthenticationFailed));
    }

    #[test]
    fn first_message_and_callback_answers_are_checked() {
        let mut s = server(Arc::new(chris_server()));
        let e = step_err(&mut s, b"username=\"chris\"");
        assert!(matches!(
            typed(&e),
            DigestMd5Error::UnexpectedInitialResponse
        ));

        for nonce in ["", "a\"b", "a b", &"n".repeat(MAX_NONCE_LEN + 1)] {
            let mut s = server(Arc::new(TestCallback {
                nonce: Some(nonce.to_owned()),
                ..chris_server()
            }));
            let e = s.step(None, &mut Vec::new()).unwrap_err();
            assert!(matches!(typed(&e), DigestMd5Error::InvalidServerNonce));
        }
        let mut s = server(Arc::new(TestCallback {
            hostname: Some("a/b"),
            ..chris_server()
        }));
        let e = s.step(None, &mut Vec::new()).unwrap_err();
        assert!(matches!(typed(&e), DigestMd5Error::InvalidHostname));
    }

    #[test]
    fn non_ascii_credentials_round_trip() {
        let server_cb = Arc::new(TestCallback {
            users: vec![("j\u{fc}rgen", "gr\u{fc}\u{df}e \u{263a}")],
            realm: Some("\u{e9}t\u{e9}"),
            ..TestCallback::default()
        });
        let client_cb = Arc::new(TestCallback {
            authid: "j\u{fc}rgen",
            password: "gr\u{fc}\u{df}e \u{263a}",
            ..TestCallback::default()
        });
        let (mut server, _, _) = exchange(server_cb, client_cb);
        assert_eq!(
            server.validation(),
            Some((Some("j\u{fc}rgen".into()), None))
        );
        assert_eq!(
            iso_8859_1_if_possible("\u{fc}".as_bytes()).as_ref(),
            b"\xfc"
        );
        assert_eq!(
            iso_8859_1_if_possible("\u{263a}".as_bytes()).as_ref(),
            "\u{263a}".as_bytes()
        );
    }

    proptest::proptest! {
        #[test]
        fn server_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..4200)) {
            let mut server = server(Arc::new(chris_server()));
            step(&mut server, None);
            let _ = server.step(Some(&input), &mut Vec::new());
        }

        #[test]
        fn parser_never_panics(input in "[a-z\"\\\\=, \\x00-\\x7f]{0,200}") {
            let _ = Directives::parse(input.as_bytes(), MAX_RESPONSE_LEN);
            let _ = Response::parse(input.as_bytes());
            let _ = Challenge::parse(input.as_bytes());
        }

        #[test]
        fn client_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..2100)) {
            let mut client = client(Arc::new(chris_client("secret")));
            let _ = client.step(Some(&input), &mut Vec::new());
            let _ = client.step(Some(&input), &mut Vec::new());
        }
    }
}
