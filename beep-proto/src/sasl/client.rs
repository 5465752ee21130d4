//! The client's side of one exchange: an rsasl client session, stepped
//! with the server's challenges as they come. The credentials are all
//! known up front ([`SaslClient`]), so nothing here waits for the
//! application.

use std::sync::Arc;

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::anonymous::AnonymousToken;
use rsasl::prelude::{MessageSent, SASLClient, SASLConfig, Session, SessionError, State};
use rsasl::property::{
    AuthId, AuthzId, ChannelBindingName, ChannelBindings, Hostname, Password, Service,
};

use super::{AuthInfo, Mechanism, SaslClient, SaslError, registry};

/// The SASL service name of BEEP (RFC 3080 4.1).
const SERVICE: &str = "beep";

/// The most PBKDF2 iterations a SCRAM server may ask of us: each costs
/// two HMACs, so a hostile listener could otherwise make us compute for
/// hours (2^32 iterations). 600,000 is the largest count in current
/// guidance (OWASP's for PBKDF2-HMAC-SHA-256).
const MAX_SCRAM_ITERATIONS: u64 = 600_000;

/// The name of the one channel binding type the session offers (RFC
/// 9266).
pub(crate) const TLS_EXPORTER: &str = "tls-exporter";

/// The `tls-exporter` channel binding of the session's TLS (RFC 9266 2:
/// 32 octets of the exporter, label `EXPORTER-Channel-Binding`).
pub(crate) type ChannelBinding = [u8; 32];

/// Answers rsasl's client-side questions from the [`SaslClient`] and, for
/// SCRAM-SHA-256-PLUS, the channel binding.
struct Credentials {
    client: SaslClient,
    binding: Option<ChannelBinding>,
}

impl SessionCallback for Credentials {
    fn callback(
        &self,
        _session: &SessionData,
        context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        let client = &self.client;
        if request.is::<ChannelBindings>() {
            // Only the type we can give: rsasl's SCRAM asks for
            // `tls-exporter` first, then `tls-unique` (TLS 1.2's), which
            // stays unanswered and fails the exchange.
            if let (Some(binding), Some(TLS_EXPORTER)) =
                (&self.binding, context.get_ref::<ChannelBindingName>())
            {
                request.satisfy::<ChannelBindings>(binding)?;
            }
            return Ok(());
        }
        // Each `satisfy` returns early once it has answered (rsasl's
        // idiom); a question nobody answers is left unanswered.
        if !client.authcid.is_empty() {
            request.satisfy::<AuthId>(&client.authcid)?;
        }
        request.satisfy::<Password>(client.password.as_bytes())?;
        if let Some(authzid) = &client.authzid {
            request.satisfy::<AuthzId>(authzid)?;
        }
        if let Some(trace) = &client.trace {
            request.satisfy::<AnonymousToken>(trace)?;
        }
        request.satisfy::<Service>(SERVICE)?;
        if let Some(host) = &client.server_name {
            request.satisfy::<Hostname>(host)?;
        }
        Ok(())
    }

    /// rsasl selects SCRAM-SHA-256-PLUS only with this, and makes plain
    /// SCRAM-SHA-256 say "I could bind" (`y`) with it: so it is on for
    /// -PLUS alone. Plain SCRAM then says `n` (RFC 5802 6), which a
    /// server that offers -PLUS accepts, as it must for a client that
    /// chose not to bind.
    fn enable_channel_binding(&self) -> bool {
        self.client.mechanism.needs_channel_binding() && self.binding.is_some()
    }
}

/// Where our side of the exchange stands.
pub(crate) struct ClientExchange {
    mechanism: Mechanism,
    session: Session,
    /// rsasl has nothing more to say: stepping again would be undefined
    /// (rsasl's SCRAM panics), so it never happens once this is set,
    /// after a success or an error alike.
    done: bool,
    /// What a success establishes.
    info: AuthInfo,
    /// The initial response, kept in case the listener starts the channel
    /// without taking it (it then goes again as a MSG).
    initial: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientExchange")
            .field("mechanism", &self.mechanism)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

fn mechanism_error(e: &SessionError) -> SaslError {
    SaslError::Mechanism(e.to_string())
}

impl ClientExchange {
    /// Starts the exchange: for a client-first mechanism the initial
    /// response is computed at once (RFC 3080 4.1.1: it rides on the
    /// start).
    ///
    /// # Errors
    ///
    /// [`SaslError::Mechanism`]: the mechanism is not available, it
    /// needs a channel binding and `binding` is `None`, or it refuses the
    /// credentials (an empty PLAIN user, a NUL in a name).
    pub(crate) fn start(
        client: &SaslClient,
        binding: Option<ChannelBinding>,
    ) -> Result<Self, SaslError> {
        let unavailable = || SaslError::Mechanism(format!("{} is not available", client.mechanism));
        let mechanism = registry::mechanism(client.mechanism).ok_or_else(unavailable)?;
        let plus = client.mechanism.needs_channel_binding();
        if plus && binding.is_none() {
            return Err(SaslError::Mechanism(format!(
                "{} needs TLS 1.3 active (its tls-exporter channel binding, RFC 9266)",
                client.mechanism
            )));
        }
        let credentials = Credentials {
            client: client.clone(),
            binding: binding.filter(|_| plus),
        };
        let config = SASLConfig::builder()
            .with_registry(registry::registry(plus))
            .with_callback(credentials)
            .map_err(|e| SaslError::Mechanism(e.to_string()))?;
        let session = SASLClient::new(Arc::clone(&config))
            .start_suggested_iter([mechanism.mechanism])
            .map_err(|e| SaslError::Mechanism(e.to_string()))?;
        let mut exchange = ClientExchange {
            mechanism: client.mechanism,
            session,
            done: false,
            info: client.info(),
            initial: None,
        };
        if client.mechanism.client_first() {
            exchange.initial = Some(exchange.step(None)?);
        }
        Ok(exchange)
    }

    /// The initial response, if the mechanism has one.
    pub(crate) fn initial(&self) -> Option<&[u8]> {
        self.initial.as_deref()
    }

    /// What a success establishes.
    pub(crate) fn info(&self) -> &AuthInfo {
        &self.info
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, SaslError> {
        if self.done {
            return Err(SaslError::Unexpected(
                "a challenge after the mechanism's last message",
            ));
        }
        let mut out = Vec::new();
        let result = self.session.step(input, &mut out);
        match result {
            Ok(State::Running) => Ok(out),
            Ok(State::Finished(_)) => {
                self.done = true;
                Ok(out)
            }
            Err(e) => {
                self.done = true;
                Err(mechanism_error(&e))
            }
        }
    }

    /// The server's challenge (a `continue` blob): our response.
    ///
    /// # Errors
    ///
    /// The mechanism cannot answer it (or has already said all it had
    /// to): the exchange is over on our side.
    pub(crate) fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        if self.mechanism.is_scram() {
            check_scram_message(data).inspect_err(|_| self.done = true)?;
            check_scram_iterations(data).inspect_err(|_| self.done = true)?;
        }
        self.step(Some(data))
    }

    /// The server's success (a `complete` blob, with its additional data,
    /// maybe empty): for mechanisms that authenticate the server too
    /// (SCRAM), the data must verify.
    ///
    /// # Errors
    ///
    /// The success does not verify: the server did not prove it knows
    /// the secret, or it sent data the mechanism had no place for.
    pub(crate) fn complete(&mut self, data: &[u8]) -> Result<(), SaslError> {
        if self.done {
            if data.is_empty() {
                return Ok(());
            }
            return Err(SaslError::Unexpected(
                "data with the success after the mechanism's last message",
            ));
        }
        if self.mechanism.is_scram() {
            check_scram_message(data).inspect_err(|_| self.done = true)?;
        }
        // rsasl: a last step without input when the server sends none.
        let input = (!data.is_empty()).then_some(data);
        let mut out = Vec::new();
        let result = self.session.step(input, &mut out);
        self.done = true;
        match result {
            Ok(State::Finished(MessageSent::No)) => Ok(()),
            Ok(State::Finished(MessageSent::Yes)) if out.is_empty() => Ok(()),
            Ok(_) => Err(SaslError::Unexpected(
                "the listener completed before the mechanism did",
            )),
            Err(e) => Err(mechanism_error(&e)),
        }
    }
}

/// Refuses a SCRAM server message whose attributes rsasl's parser
/// cannot take without panicking (see `scram::attributes_well_formed`).
fn check_scram_message(message: &[u8]) -> Result<(), SaslError> {
    if super::scram::attributes_well_formed(message, false) {
        Ok(())
    } else {
        Err(SaslError::Mechanism(
            "malformed SCRAM message (RFC 5802 7)".to_owned(),
        ))
    }
}

/// Refuses a SCRAM server-first message (RFC 5802 7) whose iteration
/// count is above [`MAX_SCRAM_ITERATIONS`], before rsasl would run it.
fn check_scram_iterations(server_first: &[u8]) -> Result<(), SaslError> {
    let count = server_first
        .split(|&b| b == b',')
        .find_map(|attr| attr.strip_prefix(b"i="));
    if let Some(count) = count {
        let digits = count.iter().take_while(|b| b.is_ascii_digit()).count();
        let too_many = digits != count.len()
            || digits > 7
            || count
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
                > MAX_SCRAM_ITERATIONS;
        if too_many {
            return Err(SaslError::Mechanism(format!(
                "SCRAM iteration count above {MAX_SCRAM_ITERATIONS}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_iteration_counts_are_bounded() {
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=4096").is_ok());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=600000").is_ok());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=600001").is_err());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=4294967295").is_err());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=99999999999999999999").is_err());
        assert!(check_scram_iterations(b"r=abc,s=c2FsdA==,i=12x").is_err());
    }

    #[test]
    fn plain_initial_response_is_authzid_authcid_password() {
        let exchange = ClientExchange::start(&SaslClient::plain("bob", "secret"), None).unwrap();
        assert_eq!(exchange.initial(), Some(&b"\0bob\0secret"[..]));
        let with =
            ClientExchange::start(&SaslClient::plain("bob", "secret").with_authzid("al"), None);
        assert_eq!(with.unwrap().initial(), Some(&b"al\0bob\0secret"[..]));
    }

    /// What a hostile listener sends our SCRAM client (rsasl's parsers
    /// panic on short attributes: `check_scram_message` stands before
    /// them): a failure, never a panic, whatever the challenge and the
    /// success data.
    fn scram_survives(plus: bool, challenge: &[u8], last: &[u8]) {
        let client = if plus {
            SaslClient::scram_sha256_plus("bob", "secret")
        } else {
            SaslClient::scram_sha256("bob", "secret")
        };
        let mut exchange = ClientExchange::start(&client, Some([7; 32])).unwrap();
        let _ = exchange.challenge(challenge);
        let _ = exchange.complete(last);
        let _ = exchange.challenge(last);
    }

    #[test]
    fn scram_client_refuses_malformed_server_messages() {
        for challenge in [&b""[..], b"r", b"r=,s", b"r=abc,s=c2FsdA==,i=4096,", b",,,"] {
            let mut exchange =
                ClientExchange::start(&SaslClient::scram_sha256("bob", "secret"), None).unwrap();
            assert!(exchange.challenge(challenge).is_err(), "{challenge:?}");
            scram_survives(true, challenge, b"v");
        }
    }

    proptest::proptest! {
        #[test]
        fn scram_client_never_panics(
            plus in proptest::bool::ANY,
            challenge in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            last in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        ) {
            scram_survives(plus, &challenge, &last);
        }

        /// Shaped like a server-first message, so the mutations reach
        /// past the nonce check.
        #[test]
        fn scram_client_never_panics_on_near_valid_messages(
            nonce in "[!-+--~]{0,40}",
            salt in "[A-Za-z0-9+/=,]{0,30}",
            iterations in "[0-9a,]{0,9}",
            last in "(v=|e=)?[A-Za-z0-9+/=,]{0,50}",
        ) {
            let challenge = format!("r={nonce},s={salt},i={iterations}");
            scram_survives(false, challenge.as_bytes(), last.as_bytes());
            scram_survives(true, challenge.as_bytes(), last.as_bytes());
        }
    }

    #[test]
    fn empty_plain_user_is_refused_by_the_mechanism() {
        let refused = ClientExchange::start(&SaslClient::plain("", "secret"), None);
        assert!(matches!(refused, Err(SaslError::Mechanism(_))));
    }
}
