//! What both drivers do around a TLS or SASL request of their own: start
//! it for a waiting caller or a callback, and what a caller that stops
//! waiting leaves behind. The drivers differ only in how they wait.

use super::{Done, Error, Layer, Notify};
use crate::error::UsageError;
use crate::sasl::{AuthInfo, SaslClient};
use crate::tls::{TlsClient, TlsInfo};

impl<T, H> Layer<T, H> {
    /// Asks for TLS ([`Core::start_tls`](super::Core::start_tls)); `done`
    /// runs on the dispatcher with the outcome (PyVortex's `tls_notify`).
    ///
    /// ```
    /// use beep_proto::dispatch::Layer;
    /// use beep_proto::tls::TlsClient;
    /// let mut layer: Layer<(), ()> = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// let client = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    /// assert!(layer.start_tls_calling(client, |_| {}).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::start_tls`](crate::Session::start_tls).
    pub fn start_tls_calling(
        &mut self,
        client: TlsClient,
        done: impl FnOnce(Result<TlsInfo, Error>) + Send + 'static,
    ) -> Result<u32, UsageError> {
        let notify = Notify::Call(Box::new(move |result: Result<Done, Error>| {
            done(result.and_then(Done::into_tls_info))
        }));
        self.core.start_tls(client, notify)
    }

    /// Authenticates us ([`Core::start_sasl`](super::Core::start_sasl));
    /// `done` runs on the dispatcher with the outcome (PyVortex's
    /// `sasl_status`).
    ///
    /// ```
    /// use beep_proto::dispatch::Layer;
    /// use beep_proto::sasl::SaslClient;
    /// let mut layer: Layer<(), ()> = Layer::new(beep_proto::Session::initiator(Default::default()));
    /// assert!(layer.start_sasl_calling(SaslClient::plain("bob", "secret"), |_| {}).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Session::start_sasl`](crate::Session::start_sasl).
    pub fn start_sasl_calling(
        &mut self,
        client: SaslClient,
        done: impl FnOnce(Result<AuthInfo, Error>) + Send + 'static,
    ) -> Result<u32, UsageError> {
        let notify = Notify::Call(Box::new(move |result: Result<Done, Error>| {
            done(result.and_then(Done::into_auth_info))
        }));
        self.core.start_sasl(client, notify)
    }
}

/// What a caller's wait for TLS gave. On a timeout `shut_down` runs: after
/// `<ready/>` nothing may be sent until the answer (RFC 3080 3.1.3.1), so
/// a session left waiting is of no use.
///
/// ```
/// use beep_proto::dispatch::{Done, Error, tls_waited};
/// let mut shut = false;
/// assert!(matches!(tls_waited(Err(Error::Timeout), || shut = true), Err(Error::Timeout)));
/// assert!(shut);
/// assert!(tls_waited(Ok(Done::Closed), || unreachable!()).is_err());
/// ```
///
/// # Errors
///
/// The wait's error, or [`Error::Closed`] for anything but TLS.
pub fn tls_waited(waited: Result<Done, Error>, shut_down: impl FnOnce()) -> Result<TlsInfo, Error> {
    match waited {
        Err(Error::Timeout) => {
            shut_down();
            Err(Error::Timeout)
        }
        other => other.and_then(Done::into_tls_info),
    }
}

/// What a caller's wait for its authentication gave. On a timeout `abort`
/// runs: nobody waits any more, so the exchange is given up
/// (`status='abort'`, see [`Core::abort_sasl`](super::Core::abort_sasl))
/// instead of left pending, and a later attempt is not refused as one in
/// progress.
///
/// ```
/// use beep_proto::dispatch::{Done, Error, auth_waited};
/// let mut aborted = false;
/// assert!(matches!(auth_waited(Err(Error::Timeout), || aborted = true), Err(Error::Timeout)));
/// assert!(aborted);
/// ```
///
/// # Errors
///
/// The wait's error, or [`Error::Closed`] for anything but an
/// authentication.
pub fn auth_waited(waited: Result<Done, Error>, abort: impl FnOnce()) -> Result<AuthInfo, Error> {
    match waited {
        Err(Error::Timeout) => {
            abort();
            Err(Error::Timeout)
        }
        other => other.and_then(Done::into_auth_info),
    }
}
