//! CRAM-MD5 (RFC 2195) as an rsasl custom mechanism.
//!
//! rsasl 2.3.1 ships no CRAM-MD5, so this module implements both sides
//! against rsasl's `unstable_custom_mechanism` API (hence the exact
//! `=2.3.1` pin of rsasl).
//!
//! # Registering
//!
//! [`CRAM_MD5`] is an `rsasl::registry::Mechanism` value. rsasl only takes
//! mechanisms as a `&'static [Mechanism]` slice, through
//! `Registry::with_mechanisms`, which the config builder takes with
//! `with_registry`:
//!
//! ```rust,ignore
//! use rsasl::prelude::{Mechanism, Registry, SASLConfig};
//! use crate::sasl::{cram_md5::CRAM_MD5, digest_md5::DIGEST_MD5};
//!
//! // Every mechanism the session offers or may pick, rsasl's own included
//! // (this list replaces rsasl's default set).
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
//! (The unit tests below build their configurations exactly this way.)
//! The mechanism goes first on the server side (`Side::Server`); its
//! priority, used by rsasl's client-side choice, is 320: above PLAIN
//! (300), below SCRAM (400 and more) and DIGEST-MD5 (340).
//!
//! # Properties asked of the callback
//!
//! Server, in this order:
//! 1. [`ServerNonce`] (empty context), step 1: the whole challenge string.
//!    If the callback gives none, one is generated,
//!    `<random.random@host>`, and then (2) is asked.
//! 2. `Hostname` (empty context), step 1, only when (1) was not answered:
//!    the domain part of the generated challenge; default `localhost`.
//! 3. `Password`, step 2, once the client's response is parsed, with
//!    `AuthId` (the user name the client sent) in the context. Not
//!    answering (unknown user) fails exactly like a wrong password.
//!
//! On success the server calls `validate` with `AuthId` in the context
//! (the password has already been checked by the mechanism; CRAM-MD5 has
//! no authorization identity), then finishes without a final message. A
//! wrong password or unknown user fails with
//! [`CramMd5Error::AuthenticationFailed`] (`"authentication failed"`),
//! which does not say which part was wrong; `validate` is not called.
//!
//! Client: `AuthId` then `Password` (empty context), when the server's
//! challenge arrives; it answers `authid SP hex(HMAC-MD5(password,
//! challenge))` and finishes.
//!
//! # Determinism (replaying a server exchange)
//!
//! The challenge is sent in step 1 but the password is only asked for in
//! step 2. A caller that re-runs a server exchange from its start with
//! the same client messages (say, after the application answered a
//! `Password` request it could not answer synchronously the first time)
//! must get the same challenge again, so the server asks the callback for
//! [`ServerNonce`] first: answer it with the same value for every run of
//! one exchange (and a fresh value for each new exchange). The value is
//! the whole challenge (for example
//! `<1896.697170952@postoffice.reston.mci.net>`): 1 to 1024 characters,
//! printable ASCII or space. When it is not answered the challenge is
//! random and a replay cannot succeed.
//!
//! Errors coming out of the callback (other than "no value") propagate
//! unchanged, so a callback can abort a run with its own error.

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use rsasl::mechanism::{Authentication, EmptyProvider, MechanismData, MechanismErrorKind};
use rsasl::mechanism::{MechanismError, ThisProvider};
use rsasl::mechname::Mechname;
use rsasl::prelude::{MessageSent, SASLConfig, SASLError, SessionError, State};
use rsasl::property::{AuthId, Hostname, Password, Property};
use rsasl::registry::{Matches, Mechanism, Named, Selection, Side};
use std::io::Write;

/// CRAM-MD5 for rsasl: client and server, server goes first. See the
/// module documentation for how to register it.
pub(crate) const CRAM_MD5: Mechanism = Mechanism::build(
    Mechname::const_new_unchecked(b"CRAM-MD5"),
    320,
    Some(start_client),
    Some(start_server),
    Side::Server,
    select,
    offer,
);

fn start_client() -> Result<Box<dyn Authentication>, SASLError> {
    Ok(Box::new(CramMd5Client { done: false }))
}

fn start_server(_config: &SASLConfig) -> Result<Box<dyn Authentication>, SASLError> {
    Ok(Box::new(CramMd5Server {
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
        &CRAM_MD5
    }
}

/// The server's random value, asked of the callback before one is
/// generated, so that a replayed server exchange sends the same challenge.
///
/// Shared by both mechanisms of this crate (the callback tells them apart
/// with `SessionData::mechanism()`): for CRAM-MD5 the value is the whole
/// challenge string (1 to 1024 characters, printable ASCII or space); for
/// DIGEST-MD5 it is the `nonce` directive (1 to 256 characters, printable
/// ASCII other than `"` and `\`). An invalid value fails the exchange.
#[derive(Debug)]
pub(crate) struct ServerNonce;
impl Property<'_> for ServerNonce {
    type Value = str;
    const DESCRIPTION: &'static str =
        "server challenge or nonce of a CRAM-MD5 or DIGEST-MD5 exchange";
}

/// Longest challenge the client accepts, in octets.
const MAX_CHALLENGE_LEN: usize = 2048;
/// Longest challenge a [`ServerNonce`] answer may give.
const MAX_SERVER_NONCE_LEN: usize = 1024;
/// Longest response the server accepts (user name, space, 32 hex digits).
const MAX_RESPONSE_LEN: usize = 2048;
/// Length of the hex digest at the end of a response.
const HEX_DIGEST_LEN: usize = 32;

/// What can go wrong in a CRAM-MD5 exchange, besides the callback's and
/// rsasl's own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CramMd5Error {
    /// A message longer than the mechanism accepts.
    #[error("CRAM-MD5 message longer than {max} octets")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The response is not `user SP 32-hex-digits`, or names no user.
    #[error("malformed CRAM-MD5 response")]
    Malformed,
    /// The user name is not UTF-8.
    #[error("CRAM-MD5 user name is not UTF-8")]
    NotUtf8,
    /// The client sent data with its first message; the server goes first.
    #[error("CRAM-MD5 takes no initial response")]
    UnexpectedInitialResponse,
    /// The callback's [`ServerNonce`] is empty, too long or not printable.
    #[error("invalid CRAM-MD5 challenge given by the callback")]
    InvalidServerNonce,
    /// The callback's `Hostname` is empty, too long or not a plain name.
    #[error("invalid host name given by the callback")]
    InvalidHostname,
    /// The callback's `AuthId` is empty or contains control characters.
    #[error("invalid CRAM-MD5 user name given by the callback")]
    InvalidAuthId,
    /// Unknown user or wrong password (deliberately not saying which).
    #[error("authentication failed")]
    AuthenticationFailed,
}

impl MechanismError for CramMd5Error {
    fn kind(&self) -> MechanismErrorKind {
        match self {
            Self::TooLong { .. } | Self::Malformed | Self::NotUtf8 => MechanismErrorKind::Parse,
            Self::AuthenticationFailed => MechanismErrorKind::Outcome,
            Self::UnexpectedInitialResponse
            | Self::InvalidServerNonce
            | Self::InvalidHostname
            | Self::InvalidAuthId => MechanismErrorKind::Protocol,
        }
    }
}

enum ServerState {
    Start,
    WaitResponse { challenge: String },
    Done,
}

/// The server side: challenge, then check the response.
struct CramMd5Server {
    state: ServerState,
}

impl Authentication for CramMd5Server {
    fn step(
        &mut self,
        session: &mut MechanismData,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        match &self.state {
            ServerState::Start => {
                if input.is_some_and(|i| !i.is_empty()) {
                    self.state = ServerState::Done;
                    return Err(CramMd5Error::UnexpectedInitialResponse.into());
                }
                let challenge = server_challenge(session)?;
                writer.write_all(challenge.as_bytes())?;
                self.state = ServerState::WaitResponse { challenge };
                Ok(State::Running)
            }
            ServerState::WaitResponse { challenge } => {
                let input = match input {
                    Some(i) if !i.is_empty() => i,
                    _ => return Err(SessionError::InputDataRequired),
                };
                let challenge = challenge.clone();
                self.state = ServerState::Done;
                let (authid, digest) = parse_response(input)?;
                let provider = ThisProvider::<AuthId>::with(authid);
                let expected = session
                    .maybe_need_with::<Password, _, _>(&provider, |password| {
                        hmac_md5(password, challenge.as_bytes())
                    })?;
                match expected {
                    Some(expected) if ct_eq(&expected, &digest) => {}
                    _ => return Err(CramMd5Error::AuthenticationFailed.into()),
                }
                session.validate(&provider)?;
                Ok(State::Finished(MessageSent::No))
            }
            ServerState::Done => Err(SessionError::MechanismDone),
        }
    }
}

/// The challenge: the callback's [`ServerNonce`], else a random one.
fn server_challenge(session: &MechanismData) -> Result<String, SessionError> {
    let given = session.maybe_need_with::<ServerNonce, _, _>(&EmptyProvider, |challenge| {
        let printable = challenge.bytes().all(|b| (0x20..0x7f).contains(&b));
        if challenge.is_empty() || challenge.len() > MAX_SERVER_NONCE_LEN || !printable {
            return Err(CramMd5Error::InvalidServerNonce.into());
        }
        Ok(challenge.to_owned())
    })?;
    if let Some(challenge) = given {
        return Ok(challenge);
    }
    let host = requested_hostname(session)?;
    let host = match host.as_deref() {
        None => DEFAULT_HOST,
        Some(h) if valid_hostname(h) => h,
        Some(_) => return Err(CramMd5Error::InvalidHostname.into()),
    };
    let mut rng = rand::thread_rng();
    Ok(format!("<{}.{}@{host}>", rng.next_u64(), rng.next_u64()))
}

/// Splits `user SP hex` at the last space (user names may hold spaces).
fn parse_response(input: &[u8]) -> Result<(&str, [u8; 16]), CramMd5Error> {
    if input.len() > MAX_RESPONSE_LEN {
        return Err(CramMd5Error::TooLong {
            max: MAX_RESPONSE_LEN,
        });
    }
    let space = input
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(CramMd5Error::Malformed)?;
    let (user, rest) = input.split_at(space);
    let hex = rest.get(1..).ok_or(CramMd5Error::Malformed)?;
    if hex.len() != HEX_DIGEST_LEN {
        return Err(CramMd5Error::Malformed);
    }
    let digest = decode_hex16(hex).ok_or(CramMd5Error::Malformed)?;
    let user = std::str::from_utf8(user).map_err(|_| CramMd5Error::NotUtf8)?;
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(CramMd5Error::Malformed);
    }
    Ok((user, digest))
}

/// The client side: one answer to the server's challenge.
struct CramMd5Client {
    done: bool,
}

impl Authentication for CramMd5Client {
    fn step(
        &mut self,
        session: &mut MechanismData,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        if self.done {
            return Err(SessionError::MechanismDone);
        }
        let challenge = match input {
            Some(i) if !i.is_empty() => i,
            _ => return Err(SessionError::InputDataRequired),
        };
        self.done = true;
        if challenge.len() > MAX_CHALLENGE_LEN {
            return Err(CramMd5Error::TooLong {
                max: MAX_CHALLENGE_LEN,
            }
            .into());
        }
        let authid = session.need_with::<AuthId, _, _>(&EmptyProvider, |authid| {
            if authid.is_empty() || authid.chars().any(char::is_control) {
                return Err(CramMd5Error::InvalidAuthId.into());
            }
            Ok(authid.to_owned())
        })?;
        let digest = session.need_with::<Password, _, _>(&EmptyProvider, |password| {
            hmac_md5(password, challenge)
        })?;
        let mut response = authid;
        response.push(' ');
        response.push_str(&hex_lower(&digest));
        writer.write_all(response.as_bytes())?;
        Ok(State::Finished(MessageSent::Yes))
    }
}

/// HMAC-MD5 (RFC 2104), keyed with the password.
fn hmac_md5(key: &[u8], data: &[u8]) -> Result<[u8; 16], SessionError> {
    let mut mac =
        <Hmac<Md5> as Mac>::new_from_slice(key).map_err(|e| SessionError::Boxed(Box::new(e)))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// Host name used when the callback gives no `Hostname`.
pub(super) const DEFAULT_HOST: &str = "localhost";

/// The callback's `Hostname`, if it gives one (asked with an empty context).
pub(super) fn requested_hostname(session: &MechanismData) -> Result<Option<String>, SessionError> {
    session.maybe_need_with::<Hostname, _, _>(&EmptyProvider, |host| Ok(host.to_owned()))
}

/// A plain host name: 1 to 255 printable ASCII characters, none of them
/// a space, `/`, `"`, `\`, `<`, `>` or `@`.
pub(super) fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"/\"\\<>@".contains(&b))
}

/// Lower-case hex of `bytes`.
pub(super) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly 32 hex digits (either case) as 16 octets.
pub(super) fn decode_hex16(hex: &[u8]) -> Option<[u8; 16]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

/// Equality whose time does not depend on where the inputs differ.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(in crate::sasl) mod tests {
    use super::*;
    use rsasl::callback::{Context, Request, SessionCallback, SessionData};
    use rsasl::prelude::{Registry, SASLClient, SASLServer, Session};
    use rsasl::property::AuthzId;
    use rsasl::validate::{Validate, Validation, ValidationError};
    use std::sync::{Arc, Mutex};

    const RFC_CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";
    const RFC_RESPONSE: &str = "tim b913a602c7eda7a495b4e6e7334d3890";

    /// What the server's `validate` saw: `AuthId` and `AuthzId`.
    pub(in crate::sasl) struct Seen;
    impl Validation for Seen {
        type Value = (Option<String>, Option<String>);
    }

    /// A test callback: a client's credentials or a server's user table,
    /// plus the optional server-side answers, logging what was asked.
    #[derive(Default)]
    pub(in crate::sasl) struct TestCallback {
        pub authid: &'static str,
        pub password: &'static str,
        pub authzid: Option<&'static str>,
        pub users: Vec<(&'static str, &'static str)>,
        pub nonce: Option<String>,
        pub realm: Option<&'static str>,
        pub hostname: Option<&'static str>,
        /// Each request, as `Property` or `Property(AuthId=..,Realm=..)`.
        pub asked: Mutex<Vec<String>>,
    }

    impl TestCallback {
        pub fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl SessionCallback for TestCallback {
        fn callback(
            &self,
            session_data: &SessionData,
            context: &Context,
            request: &mut Request,
        ) -> Result<(), SessionError> {
            let name = [
                (request.is::<ServerNonce>(), "ServerNonce"),
                (request.is::<AuthId>(), "AuthId"),
                (request.is::<AuthzId>(), "AuthzId"),
                (request.is::<Password>(), "Password"),
                (request.is::<rsasl::property::Realm>(), "Realm"),
                (request.is::<Hostname>(), "Hostname"),
            ]
            .into_iter()
            .find_map(|(is, name)| is.then_some(name))
            .unwrap_or("other");
            let mut entry = name.to_owned();
            if let Some(authid) = context.get_ref::<AuthId>() {
                entry.push_str(&format!("(AuthId={authid}"));
                if let Some(z) = context.get_ref::<AuthzId>() {
                    entry.push_str(&format!(",AuthzId={z}"));
                }
                if let Some(r) = context.get_ref::<rsasl::property::Realm>() {
                    entry.push_str(&format!(",Realm={r}"));
                }
                entry.push(')');
            }
            self.asked.lock().unwrap().push(entry);

            if let Some(realm) = self.realm {
                request.satisfy::<rsasl::property::Realm>(realm)?;
            }
            if let Some(host) = self.hostname {
                request.satisfy::<Hostname>(host)?;
            }
            match session_data.side() {
                Side::Server => {
                    if let Some(nonce) = &self.nonce {
                        request.satisfy::<ServerNonce>(nonce)?;
                    }
                    if request.is::<Password>() {
                        let authid = context.get_ref::<AuthId>();
                        let found = self.users.iter().find(|(u, _)| Some(*u) == authid);
                        if let Some((_, password)) = found {
                            request.satisfy::<Password>(password.as_bytes())?;
                        }
                    }
                }
                Side::Client => {
                    if let Some(authzid) = self.authzid {
                        request.satisfy::<AuthzId>(authzid)?;
                    }
                    request
                        .satisfy::<AuthId>(self.authid)?
                        .satisfy::<Password>(self.password.as_bytes())?;
                }
            }
            Ok(())
        }

        fn validate(
            &self,
            _session_data: &SessionData,
            context: &Context,
            validate: &mut Validate<'_>,
        ) -> Result<(), ValidationError> {
            let authid = context.get_ref::<AuthId>().map(str::to_owned);
            let authzid = context.get_ref::<AuthzId>().map(str::to_owned);
            validate.finalize::<Seen>((authid, authzid));
            Ok(())
        }
    }

    /// Wraps a callback in an `Arc` so a test can read its log afterwards.
    pub(in crate::sasl) struct Shared(pub Arc<TestCallback>);
    impl SessionCallback for Shared {
        fn callback(
            &self,
            s: &SessionData,
            c: &Context,
            r: &mut Request,
        ) -> Result<(), SessionError> {
            self.0.callback(s, c, r)
        }
        fn validate(
            &self,
            s: &SessionData,
            c: &Context,
            v: &mut Validate<'_>,
        ) -> Result<(), ValidationError> {
            self.0.validate(s, c, v)
        }
    }

    static MECHANISMS: &[Mechanism] = &[CRAM_MD5];

    /// Configuration exactly as the module documentation says.
    pub(in crate::sasl) fn config(
        mechanisms: &'static [Mechanism],
        callback: Arc<TestCallback>,
    ) -> Arc<SASLConfig> {
        SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(mechanisms))
            .with_callback(Shared(callback))
            .unwrap()
    }

    fn server(callback: Arc<TestCallback>) -> Session<Seen> {
        SASLServer::<Seen>::new(config(MECHANISMS, callback))
            .start_suggested(Mechname::parse(b"CRAM-MD5").unwrap())
            .unwrap()
    }

    fn client(callback: Arc<TestCallback>) -> Session {
        SASLClient::new(config(MECHANISMS, callback))
            .start_suggested(&[Mechname::parse(b"CRAM-MD5").unwrap()])
            .unwrap()
    }

    fn tim_server(nonce: Option<&str>) -> Arc<TestCallback> {
        Arc::new(TestCallback {
            users: vec![("tim", "tanstaaftanstaaf")],
            nonce: nonce.map(str::to_owned),
            ..TestCallback::default()
        })
    }

    fn tim_client(password: &'static str) -> Arc<TestCallback> {
        Arc::new(TestCallback {
            authid: "tim",
            password,
            ..TestCallback::default()
        })
    }

    /// The typed error inside a `SessionError::MechanismError`.
    pub(in crate::sasl) fn mech_error<E: std::error::Error + 'static>(
        error: &SessionError,
    ) -> Option<&E> {
        match error {
            SessionError::MechanismError(inner) => {
                let inner: &(dyn std::error::Error + 'static) = &**inner;
                inner.downcast_ref::<E>()
            }
            _ => None,
        }
    }

    fn step(session: &mut Session<impl Validation>, input: Option<&[u8]>) -> (State, Vec<u8>) {
        let mut out = Vec::new();
        let state = session.step(input, &mut out).unwrap();
        (state, out)
    }

    #[test]
    fn rfc2195_example_through_rsasl() {
        let server_cb = tim_server(Some(RFC_CHALLENGE));
        let client_cb = tim_client("tanstaaftanstaaf");
        let mut server = server(server_cb.clone());
        let mut client = client(client_cb.clone());
        assert!(server.are_we_first());
        assert!(!client.are_we_first());

        let (state, challenge) = step(&mut server, None);
        assert_eq!(state, State::Running);
        assert_eq!(challenge, RFC_CHALLENGE.as_bytes());

        let (state, response) = step(&mut client, Some(&challenge));
        assert_eq!(state, State::Finished(MessageSent::Yes));
        assert_eq!(response, RFC_RESPONSE.as_bytes());

        let (state, out) = step(&mut server, Some(&response));
        assert_eq!(state, State::Finished(MessageSent::No));
        assert!(out.is_empty());
        assert_eq!(server.validation(), Some((Some("tim".into()), None)));

        assert_eq!(server_cb.asked(), ["ServerNonce", "Password(AuthId=tim)"]);
        assert_eq!(client_cb.asked(), ["AuthId", "Password"]);
    }

    #[test]
    fn server_accepts_literal_rfc_response() {
        let mut server = server(tim_server(Some(RFC_CHALLENGE)));
        step(&mut server, Some(b""));
        let (state, _) = step(&mut server, Some(RFC_RESPONSE.as_bytes()));
        assert!(state.is_finished());
        let mut out = Vec::new();
        let again = server.step(Some(RFC_RESPONSE.as_bytes()), &mut out);
        assert!(matches!(again, Err(SessionError::MechanismDone)));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let mut server = server(tim_server(Some(RFC_CHALLENGE)));
        let mut client = client(tim_client("tanstaaftanstaag"));
        let (_, challenge) = step(&mut server, None);
        let (_, response) = step(&mut client, Some(&challenge));
        let mut out = Vec::new();
        let err = server.step(Some(&response), &mut out).unwrap_err();
        assert!(matches!(
            mech_error::<CramMd5Error>(&err),
            Some(CramMd5Error::AuthenticationFailed)
        ));
        assert_eq!(
            err.to_string(),
            "internal mechanism error: authentication failed"
        );
        assert_eq!(server.validation(), None);

        let mut server2 = server_for_unknown();
        step(&mut server2, None);
        let err2 = server2
            .step(Some(b"tom b913a602c7eda7a495b4e6e7334d3890"), &mut out)
            .unwrap_err();
        assert_eq!(err.to_string(), err2.to_string());
        assert!(out.is_empty());
    }

    fn server_for_unknown() -> Session<Seen> {
        server(tim_server(Some(RFC_CHALLENGE)))
    }

    #[test]
    fn malformed_responses_fail() {
        let long = format!("{} b913a602c7eda7a495b4e6e7334d3890", "u".repeat(3000));
        let cases: &[&[u8]] = &[
            b"tim",
            b"timb913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d389",
            b"tim b913a602c7eda7a495b4e6e7334d38900",
            b"tim b913a602c7eda7a495b4e6e7334d389g",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d3890 ",
            b"t\xffm b913a602c7eda7a495b4e6e7334d3890",
            b"t\nm b913a602c7eda7a495b4e6e7334d3890",
            long.as_bytes(),
        ];
        for case in cases {
            let mut server = server(tim_server(Some(RFC_CHALLENGE)));
            step(&mut server, None);
            let err = server.step(Some(case), &mut Vec::new()).unwrap_err();
            let typed = mech_error::<CramMd5Error>(&err);
            assert!(
                matches!(
                    typed,
                    Some(
                        CramMd5Error::Malformed
                            | CramMd5Error::NotUtf8
                            | CramMd5Error::TooLong { .. }
                    )
                ),
                "{case:?}: {err}"
            );
            assert_eq!(server.validation(), None);
        }
        // No input at all is "input required", and the exchange can go on.
        let mut server = server(tim_server(Some(RFC_CHALLENGE)));
        step(&mut server, None);
        let err = server.step(None, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, SessionError::InputDataRequired));
        let (state, _) = step(&mut server, Some(RFC_RESPONSE.as_bytes()));
        assert!(state.is_finished());
    }

    #[test]
    fn generated_challenge_when_callback_gives_none() {
        let cb = tim_server(None);
        let mut first = server(cb.clone());
        let (_, a) = step(&mut first, None);
        let (_, b) = step(&mut server(cb.clone()), None);
        let a = String::from_utf8(a).unwrap();
        assert_ne!(a.as_bytes(), b);
        let inner = a
            .strip_prefix('<')
            .unwrap()
            .strip_suffix("@localhost>")
            .unwrap();
        let (x, y) = inner.split_once('.').unwrap();
        assert!(x.parse::<u64>().is_ok() && y.parse::<u64>().is_ok());
        assert_eq!(&cb.asked()[..2], ["ServerNonce", "Hostname"]);

        // And it still authenticates.
        let (_, response) = step(
            &mut client(tim_client("tanstaaftanstaaf")),
            Some(a.as_bytes()),
        );
        assert!(step(&mut first, Some(&response)).0.is_finished());

        let named = Arc::new(TestCallback {
            hostname: Some("beep.example.org"),
            ..TestCallback::default()
        });
        let (_, c) = step(&mut server(named), None);
        assert!(c.ends_with(b"@beep.example.org>"));
    }

    #[test]
    fn invalid_callback_answers_fail() {
        for nonce in ["", "bad\nnonce", &"x".repeat(2000)] {
            let mut server = server(tim_server(Some(nonce)));
            let err = server.step(None, &mut Vec::new()).unwrap_err();
            assert!(matches!(
                mech_error::<CramMd5Error>(&err),
                Some(CramMd5Error::InvalidServerNonce)
            ));
        }
        let bad_host = Arc::new(TestCallback {
            hostname: Some("a b"),
            ..TestCallback::default()
        });
        let err = server(bad_host).step(None, &mut Vec::new()).unwrap_err();
        assert!(matches!(
            mech_error::<CramMd5Error>(&err),
            Some(CramMd5Error::InvalidHostname)
        ));
        let mut bad_user = client(Arc::new(TestCallback {
            authid: "",
            password: "x",
            ..TestCallback::default()
        }));
        let err = bad_user.step(Some(b"<1@x>"), &mut Vec::new()).unwrap_err();
        assert!(matches!(
            mech_error::<CramMd5Error>(&err),
            Some(CramMd5Error::InvalidAuthId)
        ));
    }

    #[test]
    fn first_messages_are_checked() {
        let mut server = server(tim_server(Some(RFC_CHALLENGE)));
        let err = server.step(Some(b"tim"), &mut Vec::new()).unwrap_err();
        assert!(matches!(
            mech_error::<CramMd5Error>(&err),
            Some(CramMd5Error::UnexpectedInitialResponse)
        ));

        let mut client = client(tim_client("tanstaaftanstaaf"));
        let err = client.step(None, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, SessionError::InputDataRequired));
        let too_long = vec![b'x'; MAX_CHALLENGE_LEN + 1];
        let err = client.step(Some(&too_long), &mut Vec::new()).unwrap_err();
        assert!(matches!(
            mech_error::<CramMd5Error>(&err),
            Some(CramMd5Error::TooLong { .. })
        ));
    }

    #[test]
    fn registration_is_visible_to_rsasl() {
        let cb = tim_server(None);
        let server = SASLServer::<Seen>::new(config(MECHANISMS, cb.clone()));
        let names: Vec<_> = server
            .get_available()
            .into_iter()
            .map(|m| m.mechanism.as_str())
            .collect();
        assert_eq!(names, ["CRAM-MD5"]);
        // The client only picks it when offered.
        let offered = [Mechname::parse(b"PLAIN").unwrap()];
        assert!(
            SASLClient::new(config(MECHANISMS, cb))
                .start_suggested(&offered)
                .is_err()
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(hex_lower(&[0x00, 0xab, 0x7f]), "00ab7f");
        let d = decode_hex16(b"B913A602C7EDA7A495B4E6E7334D3890").unwrap();
        assert_eq!(hex_lower(&d), "b913a602c7eda7a495b4e6e7334d3890");
        assert!(decode_hex16(b"b913").is_none());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
        assert!(valid_hostname("elwood.innosoft.com") && !valid_hostname("a/b"));
    }

    proptest::proptest! {
        #[test]
        fn server_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..2100)) {
            let mut server = server(tim_server(Some(RFC_CHALLENGE)));
            step(&mut server, None);
            let _ = server.step(Some(&input), &mut Vec::new());
        }

        #[test]
        fn client_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..2100)) {
            let mut client = client(tim_client("tanstaaftanstaaf"));
            let _ = client.step(Some(&input), &mut Vec::new());
        }
    }
}
