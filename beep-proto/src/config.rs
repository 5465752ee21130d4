//! Session configuration: what we advertise and the limits that bound the
//! memory a peer can make us hold.

use crate::error::UsageError;
use crate::frame::{DEFAULT_MAX_HEADER_LEN, MAX_31BIT};

/// The window every channel starts with, per direction (RFC 3081 3.1.1).
pub const DEFAULT_WINDOW: u32 = 4096;

/// Configuration of a [`Session`](crate::Session).
///
/// ```
/// use beep_proto::Config;
/// let config = Config {
///     profiles: vec!["http://example.org/beep/echo".into()],
///     receive_window: 1 << 20,
///     max_frame_size: 64 * 1024,
///     ..Config::default()
/// };
/// assert_eq!(config.max_channels, 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Profile URIs advertised in our greeting. Put
    /// [`TLS_URI`](crate::tls::TLS_URI) here to offer TLS (RFC 3080 3.1):
    /// the session then answers a `<ready/>` with
    /// [`Event::TlsRequested`](crate::Event::TlsRequested), and TLS is no
    /// longer advertised once active.
    pub profiles: Vec<String>,
    /// Profiles advertised and started only once TLS is active: before,
    /// a start of one of them is refused with 538 without asking the
    /// application.
    pub tls_profiles: Vec<String>,
    /// Profiles advertised from the greeting on but started only once the
    /// peer has authenticated to us (RFC 3080 4, SASL): before, a start of
    /// one of them is refused with 530 (authentication required) without
    /// asking the application. They are advertised at once because BEEP
    /// greets again only after a security layer, which SASL here never
    /// negotiates. The SASL mechanisms themselves go in
    /// [`Config::profiles`] (their [`Mechanism::uri`](crate::sasl::Mechanism::uri)).
    pub auth_profiles: Vec<String>,
    /// Largest SASL blob (decoded) a peer may send, and so what a
    /// listener keeps per round of an exchange: a larger one fails the
    /// exchange. 16 KiB holds any mechanism's message many times over.
    pub max_sasl_blob: usize,
    /// Most challenges (client side) or client messages (server side) of
    /// one SASL exchange (a server-first mechanism's start counts as one):
    /// SCRAM-SHA-256, CRAM-MD5 and DIGEST-MD5 need two. 0 refuses every
    /// exchange.
    pub max_sasl_rounds: usize,
    /// Most failed SASL exchanges a peer may have on one session, as the
    /// server: further SASL starts are refused with 554, so one
    /// connection cannot try passwords without end (RFC 4422 3.8 leaves
    /// the limit to the server). 3, as many login services allow; a
    /// peer that wants more must connect again, which the listener sees
    /// and can limit.
    pub max_auth_failures: u32,
    /// Requires TLS for the whole session: until TLS is active only
    /// [`TLS_URI`](crate::tls::TLS_URI) is advertised, and a start of any
    /// other profile is refused with 538 (RFC 3080 9: a peer may require
    /// privacy).
    pub require_tls: bool,
    /// The `features` attribute of our greeting: space-separated tokens;
    /// unregistered ones must start with `x-` (RFC 3080 5.2).
    pub features: Option<String>,
    /// The `localize` attribute of our greeting.
    pub localize: Option<String>,
    /// Language of the diagnostic texts we send in `<error>` and
    /// `<close>`; `None` means `i-default`. Sent as `xml:lang` unless it is
    /// the peer's first `localize` choice (RFC 3080 2.3.1.5, RFC 3080 2.3.1.3).
    pub diagnostic_language: Option<String>,
    /// Receive window each channel starts with (4096 to 2^31-1); advertised
    /// with SEQ when larger than 4096, the window of RFC 3081 3.1.1. It
    /// grows by itself up to [`Config::max_receive_window`].
    pub receive_window: u32,
    /// The size a channel's receive window may grow to by itself. Each
    /// time the peer sends everything the window allows (it is waiting for
    /// our SEQ: the window, not the application, is what limits it), the
    /// window doubles, within [`Config::receive_budget`]; a window large
    /// enough for the path is never used up and stays as it is, so request
    /// and reply traffic keeps 4096. Default 1 MiB; set it to
    /// `receive_window` for fixed windows. `Session::set_receive_window`
    /// fixes one channel's.
    pub max_receive_window: u32,
    /// The receive windows of all channels of a session together may not
    /// grow beyond this many octets (a channel's first window always
    /// counts). It bounds what a peer can make us hold: the default, 4 MiB,
    /// is what 1,024 channels of 4096 octets allowed before windows grew.
    pub receive_budget: usize,
    /// Largest payload of a frame we send. Messages are split to fit this
    /// and the peer's window, so a frame is never larger than what the
    /// peer allows. Default 64 KiB: with a peer's large window, bulk data
    /// goes in few frames; with the usual 4096-octet window, frames are
    /// that size.
    pub max_frame_size: u32,
    /// Largest header line we accept, CRLF included.
    pub max_header_len: usize,
    /// Largest message we reassemble; bigger ones need streaming mode.
    pub max_message_size: usize,
    /// Octets that unfinished messages may hold on all channels together
    /// (each is also bounded by `max_message_size`). Credit for the frames
    /// of an unfinished message goes back while the application keeps up,
    /// so without this a peer starting a partial message on every channel
    /// could make us hold `max_message_size` times `max_channels`; a peer
    /// beyond it ends the session with
    /// [`ProtocolError::ReassemblyBudgetExceeded`](crate::ProtocolError::ReassemblyBudgetExceeded).
    /// The default, 64 MiB, lets four messages of the largest default size
    /// arrive at once; streaming channels do not count.
    pub max_reassembly: usize,
    /// Largest greeting we accept from the peer (it is kept for the whole
    /// session). 16 KiB holds some 150 profile URIs; LibVortex sends a
    /// few hundred octets and hangs up on a greeting above about 4 KiB, so
    /// anything near the limit is unusual, and a larger one ends the
    /// session with
    /// [`ProtocolError::GreetingTooLarge`](crate::ProtocolError::GreetingTooLarge).
    pub max_greeting: usize,
    /// Most profiles a peer's `<start>` may offer; a start with more is
    /// refused (code 501). RFC 3080 sets no number; one is usual, and the
    /// profiles of a start are kept until the application answers it.
    pub max_start_profiles: usize,
    /// Most start requests of the peer's awaiting the application's
    /// answer; more are refused (code 421) until it has answered some.
    /// 512: a peer may ask for all of the at least 257 channels a session
    /// must support at once (RFC 3080 2.3.1.2); with at most
    /// `max_start_profiles` profiles and `max_channel0_message` octets per
    /// start, what they hold is bounded by about 32 MiB.
    pub max_pending_starts: usize,
    /// Largest channel-0 message (greeting, start, close...).
    pub max_channel0_message: usize,
    /// Octets of channel-0 output (answers to the peer's start and close
    /// requests) left unsent above which the peer's window for further
    /// requests is not reopened until they have gone. A peer that keeps
    /// asking without granting window for the answers then stalls itself
    /// instead of making us hold its answers (each at most about 1 KiB:
    /// diagnostics never repeat peer input at length).
    pub max_queued_channel0: usize,
    /// Most channels open at once, channel 0 excluded (RFC 3080 2.3: at least 257).
    pub max_channels: usize,
    /// Most MSGs received on one channel and not yet answered. The window
    /// bounds their octets but not their number (a MSG can be empty), so
    /// this bounds the bookkeeping; a peer beyond it ends the session.
    /// Large enough for 100-octet MSGs filling a 1 MiB window.
    pub max_pipelined: usize,
    /// Most MSGs received on all channels together and not yet answered
    /// (65,536: each costs bookkeeping and an event however small it is;
    /// `max_pipelined` times the default 1,024 channels would be 16 M).
    pub max_pipelined_total: usize,
    /// Most ANS messages of one reply being reassembled at once (each
    /// started with `*` and not yet finished).
    pub max_answers_in_progress: usize,
    /// Most of our MSGs awaiting replies on one channel.
    pub max_outstanding: usize,
    /// Most events waiting to be polled before input is refused.
    pub max_pending_events: usize,
    /// Octets of application output queued and not yet handed out by
    /// [`Session::poll_transmit`](crate::Session::poll_transmit) above which
    /// `send_msg`, `send_rpy`, `send_err` and `send_ans` are refused with
    /// [`UsageError::OutputFull`] (`send_nul` never is). A peer that stops
    /// reading (or granting window) then cannot make us buffer without
    /// bound; [`Event::Writable`](crate::Event::Writable) follows when
    /// the queue has drained. One message may take the queue past the
    /// limit: the check is made before it is added.
    pub max_queued_output: usize,
    /// Give receive window back when a message event is polled (true), or
    /// only when [`Session::consumed`](crate::Session::consumed) says so.
    pub auto_credit: bool,
    /// Bytes gathered into one buffer by
    /// [`Session::poll_transmit`](crate::Session::poll_transmit) before it
    /// returns it (fewer, larger writes).
    pub transmit_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            profiles: Vec::new(),
            tls_profiles: Vec::new(),
            auth_profiles: Vec::new(),
            max_sasl_blob: 16 << 10,
            max_sasl_rounds: 8,
            max_auth_failures: 3,
            require_tls: false,
            features: None,
            localize: None,
            diagnostic_language: None,
            receive_window: DEFAULT_WINDOW,
            max_receive_window: 1 << 20,
            receive_budget: 4 << 20,
            max_frame_size: 64 << 10,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
            max_message_size: 16 << 20,
            max_reassembly: 64 << 20,
            max_greeting: 16 << 10,
            max_start_profiles: 32,
            max_pending_starts: 512,
            max_channel0_message: 64 << 10,
            max_queued_channel0: 64 << 10,
            max_channels: 1024,
            max_pipelined: 1 << 14,
            max_pipelined_total: 1 << 16,
            max_answers_in_progress: 64,
            max_outstanding: 1 << 16,
            max_pending_events: 1 << 16,
            max_queued_output: 4 << 20,
            auto_credit: true,
            transmit_batch: 64 << 10,
        }
    }
}

impl Config {
    /// Checks what the session cannot honour as given: a receive window
    /// outside 4096..=2^31-1 (RFC 3081 3.1.1; the session would clamp it),
    /// a zero frame size, and greeting features that are neither registered
    /// nor `x-` prefixed (RFC 3080 5.2, RFC 3080 5.2; no BEEP feature is
    /// registered, so every token must start with `x-`), and a tuning
    /// profile (TLS, SASL) among [`Config::auth_profiles`], which could
    /// never start. Drivers call it when connecting and binding.
    ///
    /// ```
    /// use beep_proto::Config;
    /// assert!(Config::default().validate().is_ok());
    /// let bad = Config { features: Some("x-fast turbo".into()), ..Config::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("turbo"));
    /// ```
    pub fn validate(&self) -> Result<(), UsageError> {
        let invalid = |reason: String| Err(UsageError::InvalidConfig { reason });
        if !(DEFAULT_WINDOW..=MAX_31BIT).contains(&self.receive_window) {
            return invalid(format!(
                "receive window {} is outside 4096..=2147483647 (RFC 3081 3.1.1)",
                self.receive_window
            ));
        }
        if self.max_frame_size == 0 {
            return invalid("max_frame_size must be at least 1".into());
        }
        if let Some(bad) = self
            .auth_profiles
            .iter()
            .find(|p| p.starts_with(crate::sasl::SASL_URI_PREFIX) || *p == crate::tls::TLS_URI)
        {
            return invalid(format!(
                "{bad} cannot need authentication: the tuning profiles are what authenticates"
            ));
        }
        let features = self.features.as_deref().unwrap_or("");
        if let Some(bad) = features.split_whitespace().find(|f| !f.starts_with("x-")) {
            return invalid(format!(
                "feature {bad:?} is not registered and does not start with \"x-\" (RFC 3080 5.2)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3080_5_2_unregistered_features_need_the_x_prefix() {
        let ok = Config {
            features: Some("x-a x-b".into()),
            ..Config::default()
        };
        assert!(ok.validate().is_ok());
        let bad = Config {
            features: Some("x-a b".into()),
            ..Config::default()
        };
        assert!(
            matches!(bad.validate(), Err(UsageError::InvalidConfig { reason }) if reason.contains("\"b\""))
        );
    }

    #[test]
    fn rfc3080_4_tuning_profiles_cannot_need_authentication() {
        for uri in [crate::sasl::Mechanism::Plain.uri(), crate::tls::TLS_URI] {
            let bad = Config {
                auth_profiles: vec![uri.into()],
                ..Config::default()
            };
            assert!(bad.validate().is_err(), "{uri}");
        }
        let good = Config {
            auth_profiles: vec!["http://example.org/p".into()],
            ..Config::default()
        };
        assert!(good.validate().is_ok());
    }

    #[test]
    fn rfc3081_3_1_1_windows_below_4096_are_refused() {
        let small = Config {
            receive_window: 1024,
            ..Config::default()
        };
        assert!(small.validate().is_err());
        let zero_frames = Config {
            max_frame_size: 0,
            ..Config::default()
        };
        assert!(zero_frames.validate().is_err());
    }
}
