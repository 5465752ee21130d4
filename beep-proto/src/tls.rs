//! The TLS transport security profile (RFC 3080 3.1), driven in memory.
//!
//! The session runs rustls itself: after `<proceed/>`, the bytes a driver
//! hands to [`Session::handle_input`](crate::Session::handle_input) go to
//! rustls, and what [`Session::poll_transmit`](crate::Session::poll_transmit)
//! returns is ciphertext. Drivers keep moving plain bytes and never see
//! the switch. This module holds what the application configures
//! ([`TlsClient`], [`TlsServer`]), what the session reports ([`TlsInfo`],
//! [`TlsError`]) and the in-memory rustls connection (private), so that
//! rustls's API stays behind one module.

mod verify;

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// The profile URI of TLS (RFC 3080 3.1.1).
///
/// ```
/// assert_eq!(beep_proto::tls::TLS_URI, "http://iana.org/beep/TLS");
/// ```
pub const TLS_URI: &str = "http://iana.org/beep/TLS";

/// The crypto provider every configuration of beep-rs uses: rustls's ring
/// provider, chosen explicitly (rustls panics when it has to guess
/// between two providers in one build).
///
/// ```
/// let provider = beep_proto::tls::provider();
/// assert!(!provider.cipher_suites.is_empty());
/// ```
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The initiator's side of TLS: how to verify the listener, and the name
/// to ask for (sent as SNI, and checked against the certificate).
///
/// ```
/// use beep_proto::tls::TlsClient;
/// let ca = TlsClient::with_ca_pem(b"not a certificate", "localhost");
/// assert!(ca.is_err());
/// ```
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// TLS with a rustls configuration of the application's own (it must
    /// have been built with a provider: see [`provider`]).
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: `server_name` is neither a DNS name nor an IP
    /// address.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use beep_proto::tls::{TlsClient, provider};
    /// let config = rustls::ClientConfig::builder_with_provider(provider())
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let client = TlsClient::new(Arc::new(config), "example.org").unwrap();
    /// assert_eq!(client.server_name(), "example.org");
    /// ```
    pub fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        Ok(TlsClient {
            config,
            server_name,
        })
    }

    /// Verifies the listener against `roots` (the system's, or a bundle).
    ///
    /// # Errors
    ///
    /// As [`TlsClient::new`].
    ///
    /// ```
    /// use beep_proto::tls::TlsClient;
    /// let client = TlsClient::with_roots(rustls::RootCertStore::empty(), "127.0.0.1").unwrap();
    /// assert_eq!(client.server_name(), "127.0.0.1");
    /// ```
    pub fn with_roots(roots: RootCertStore, server_name: &str) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::new(Arc::new(config), server_name)
    }

    /// Verifies the listener against the system's trusted CAs (the
    /// platform's certificate store; on Linux the CA bundle, or the file
    /// `SSL_CERT_FILE` names).
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: no usable certificate in the store, or a bad
    /// `server_name`.
    ///
    /// ```no_run
    /// let client = beep_proto::tls::TlsClient::with_system_roots("beep.example.org").unwrap();
    /// ```
    pub fn with_system_roots(server_name: &str) -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(TlsError::Config(format!(
                "no trusted CA certificate in the system store {why}"
            )));
        }
        Self::with_roots(roots, server_name)
    }

    /// Verifies the listener against the CA certificates in `pem`.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: no certificate in `pem`, one rustls cannot
    /// use as a root, or a bad `server_name`.
    ///
    /// ```
    /// assert!(beep_proto::tls::TlsClient::with_ca_pem(b"", "localhost").is_err());
    /// ```
    pub fn with_ca_pem(pem: &[u8], server_name: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates_from_pem(pem)? {
            roots.add(cert).map_err(config_error)?;
        }
        Self::with_roots(roots, server_name)
    }

    /// Accepts exactly the listener certificate `pinned` (DER), whoever
    /// signed it: for peers with a self-signed certificate known in
    /// advance. The handshake's signatures are still checked.
    ///
    /// # Errors
    ///
    /// As [`TlsClient::new`].
    ///
    /// ```
    /// use beep_proto::tls::TlsClient;
    /// let pinned = rustls::pki_types::CertificateDer::from(vec![0x30, 0x00]);
    /// assert!(TlsClient::pinned(pinned, "localhost").is_ok());
    /// ```
    pub fn pinned(pinned: CertificateDer<'static>, server_name: &str) -> Result<Self, TlsError> {
        Self::with_verifier(verify::Pinned::new(Some(pinned)), server_name)
    }

    /// Accepts any listener certificate: **no authentication of the peer
    /// at all**, so anyone on the path can read and change the session.
    /// For tests only; the name says so on purpose.
    ///
    /// # Errors
    ///
    /// As [`TlsClient::new`].
    ///
    /// ```
    /// let client = beep_proto::tls::TlsClient::dangerous_accept_any_certificate("localhost");
    /// assert!(client.is_ok());
    /// ```
    pub fn dangerous_accept_any_certificate(server_name: &str) -> Result<Self, TlsError> {
        Self::with_verifier(verify::Pinned::new(None), server_name)
    }

    fn with_verifier(verifier: verify::Pinned, server_name: &str) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Self::new(Arc::new(config), server_name)
    }

    /// The name asked for.
    ///
    /// ```
    /// let client = beep_proto::tls::TlsClient::dangerous_accept_any_certificate("::1").unwrap();
    /// assert_eq!(client.server_name(), "::1");
    /// ```
    pub fn server_name(&self) -> String {
        match &self.server_name {
            ServerName::DnsName(name) => name.as_ref().to_owned(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// The listener's side of TLS: its certificate chain and key. Choose one
/// per `serverName` when answering [`Event::TlsRequested`](crate::Event::TlsRequested).
///
/// ```
/// assert!(beep_proto::tls::TlsServer::from_pem(b"", b"").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// TLS with a rustls configuration of the application's own (built
    /// with a provider: see [`provider`]).
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let (chain, key) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    /// let server = beep_proto::tls::TlsServer::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    /// let again = beep_proto::tls::TlsServer::new(server.config());
    /// ```
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsServer { config }
    }

    /// The certificate chain (leaf first) and private key in PEM.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: no certificate or no key in the PEM, or a
    /// key that does not suit the certificate.
    ///
    /// ```
    /// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// let server = beep_proto::tls::TlsServer::from_pem(
    ///     cert.cert.pem().as_bytes(),
    ///     cert.signing_key.serialize_pem().as_bytes(),
    /// );
    /// assert!(server.is_ok());
    /// ```
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Config(format!("private key: {e}")))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(config_error)?;
        Ok(TlsServer::new(Arc::new(config)))
    }

    /// [`TlsServer::from_pem`] from two files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`]: a file cannot be read, or as
    /// [`TlsServer::from_pem`].
    ///
    /// ```
    /// let missing = beep_proto::tls::TlsServer::from_pem_files("/nonexistent.pem", "/nonexistent.key");
    /// assert!(missing.is_err());
    /// ```
    pub fn from_pem_files(
        chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self, TlsError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| TlsError::Config(format!("{}: {e}", path.display())))
        };
        Self::from_pem(&read(chain.as_ref())?, &read(key.as_ref())?)
    }

    /// The rustls configuration.
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// assert!(server.config().alpn_protocols.is_empty());
    /// ```
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Config("no certificate in the PEM".into()));
    }
    Ok(certs)
}

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// What the session knows of its TLS layer once the handshake is over
/// ([`Event::TlsActive`](crate::Event::TlsActive)).
///
/// ```
/// let info = beep_proto::tls::TlsInfo::default();
/// assert!(info.peer_certificates.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The peer's certificate chain, leaf first (empty when the peer sent
    /// none, as initiators usually do).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The negotiated TLS version.
    pub protocol_version: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<rustls::CipherSuite>,
    /// The name the initiator asked for with SNI (on the listener), or
    /// verified (on the initiator).
    pub server_name: Option<String>,
}

/// Why the TLS negotiation failed; the session ends with
/// [`SessionEnd::TlsFailed`](crate::SessionEnd::TlsFailed).
///
/// ```
/// use beep_proto::tls::{CertificateProblem, TlsError};
/// let e = TlsError::Certificate(CertificateProblem::UnknownIssuer);
/// assert_eq!(e.to_string(), "the peer's certificate was refused: issued by an untrusted authority");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// We refused the peer's certificate.
    #[error("the peer's certificate was refused: {0}")]
    Certificate(CertificateProblem),
    /// The peer ended the handshake with an alert (it refused our
    /// certificate, say).
    #[error("the peer sent the TLS alert {0}")]
    Alert(String),
    /// The bytes are not TLS, or break its rules.
    #[error("TLS protocol error: {0}")]
    Protocol(String),
    /// The transport ended before the handshake did.
    #[error("the connection closed during the TLS handshake")]
    ClosedDuringHandshake,
    /// The configuration cannot be used.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// What was wrong with a certificate the peer presented.
///
/// ```
/// assert_eq!(
///     beep_proto::tls::CertificateProblem::NotValidForName.to_string(),
///     "not valid for the name asked for"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// No trusted authority issued it.
    #[error("issued by an untrusted authority")]
    UnknownIssuer,
    /// It names another host.
    #[error("not valid for the name asked for")]
    NotValidForName,
    /// It has expired.
    #[error("expired")]
    Expired,
    /// It is not valid yet.
    #[error("not valid yet")]
    NotValidYet,
    /// It is not the pinned one ([`TlsClient::pinned`]).
    #[error("not the pinned certificate")]
    NotPinned,
    /// Another problem, as rustls words it.
    #[error("{0}")]
    Other(String),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match e {
            rustls::Error::InvalidCertificate(c) => TlsError::Certificate(match c {
                C::UnknownIssuer => CertificateProblem::UnknownIssuer,
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    CertificateProblem::NotValidForName
                }
                C::Expired | C::ExpiredContext { .. } => CertificateProblem::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => CertificateProblem::NotValidYet,
                C::ApplicationVerificationFailure => CertificateProblem::NotPinned,
                other => CertificateProblem::Other(format!("{other:?}")),
            }),
            rustls::Error::AlertReceived(alert) => TlsError::Alert(format!("{alert:?}")),
            other => TlsError::Protocol(other.to_string()),
        }
    }
}

/// The rustls connection under a session, fed and drained in memory.
#[derive(Debug)]
pub(crate) struct TlsLayer {
    conn: rustls::Connection,
    /// The name the initiator asked for (and verified), on its side.
    asked: Option<String>,
    /// Reported once, when the handshake ends.
    active_reported: bool,
}

impl TlsLayer {
    pub(crate) fn client(client: &TlsClient) -> Result<Self, TlsError> {
        let conn = ClientConnection::new(client.config.clone(), client.server_name.clone())?;
        let mut layer = Self::wrap(conn.into());
        layer.asked = Some(client.server_name());
        Ok(layer)
    }

    pub(crate) fn server(server: &TlsServer) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(server.config.clone())?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(mut conn: rustls::Connection) -> Self {
        // The session bounds what it hands over (its transmit batch), and
        // before the handshake ends only the new greeting is written:
        // rustls need not bound it again and refuse part of a write.
        conn.set_buffer_limit(None);
        TlsLayer {
            conn,
            asked: None,
            active_reported: false,
        }
    }

    /// Feeds ciphertext; appends the plaintext it carried to `plain`.
    /// Returns true once the peer has sent its close_notify.
    pub(crate) fn decrypt(
        &mut self,
        mut input: &[u8],
        plain: &mut BytesMut,
    ) -> Result<bool, TlsError> {
        let mut closed = false;
        while !input.is_empty() {
            let n = self
                .conn
                .read_tls(&mut input)
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            let state = self.conn.process_new_packets()?;
            // Drained after every record batch: rustls refuses more input
            // while its plaintext buffer is full.
            let want = state.plaintext_bytes_to_read();
            if want > 0 {
                let start = plain.len();
                plain.resize(start + want, 0);
                let got = self
                    .conn
                    .reader()
                    .read(&mut plain[start..])
                    .map_err(|e| TlsError::Protocol(e.to_string()))?;
                plain.truncate(start + got);
            }
            closed |= state.peer_has_closed();
            if n == 0 {
                break;
            }
        }
        Ok(closed)
    }

    /// Encrypts `plain` (buffered by rustls until the handshake is over).
    pub(crate) fn encrypt(&mut self, plain: &[u8]) {
        // Cannot fail without a buffer limit.
        let _ = self.conn.writer().write_all(plain);
    }

    /// Encrypts the pieces in order, as one stream: records span the
    /// pieces (a write per piece would give each small frame header a
    /// record of its own).
    pub(crate) fn encrypt_vectored(&mut self, pieces: &[&[u8]]) {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let slices: Vec<std::io::IoSlice<'_>> =
            pieces.iter().map(|p| std::io::IoSlice::new(p)).collect();
        // Without a buffer limit rustls takes everything at once; should
        // it not, the rest goes piece by piece.
        let written = self.conn.writer().write_vectored(&slices).unwrap_or(0);
        if written < total {
            let mut skip = written;
            for piece in pieces {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                self.encrypt(&piece[skip..]);
                skip = 0;
            }
        }
    }

    /// Appends what rustls has to send (handshake, records, alerts).
    pub(crate) fn take_ciphertext(&mut self, out: &mut BytesMut) {
        let mut w = out.writer();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut w).is_err() {
                break;
            }
        }
    }

    /// True while rustls has bytes to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The `tls-exporter` channel binding (RFC 9266 2): 32 octets of the
    /// TLS exporter with label `EXPORTER-Channel-Binding` and no context,
    /// once the handshake has ended, and only under TLS 1.3 (RFC 9266 3:
    /// TLS 1.2's exporter binds only with extended master secret, which
    /// rustls does not report).
    pub(crate) fn channel_binding(&self) -> Option<[u8; 32]> {
        if self.conn.is_handshaking()
            || self.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
        {
            return None;
        }
        self.conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    }

    /// The handshake's outcome, once, when it has just ended.
    pub(crate) fn newly_active(&mut self) -> Option<TlsInfo> {
        if self.active_reported || self.conn.is_handshaking() {
            return None;
        }
        self.active_reported = true;
        Some(self.info())
    }

    pub(crate) fn info(&self) -> TlsInfo {
        let server_name = match &self.conn {
            rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => self.asked.clone(),
        };
        TlsInfo {
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            protocol_version: self.conn.protocol_version(),
            cipher_suite: self.conn.negotiated_cipher_suite().map(|s| s.suite()),
            server_name,
        }
    }
}
