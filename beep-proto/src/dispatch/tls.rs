//! How a listener answers the peer's TLS requests (PyVortex's TLS accept,
//! certificate and key handlers, in one): a [`TlsAcceptor`] is asked for
//! each request, with its serverName and the connection it came on, and
//! gives the certificate to present, or nothing to refuse.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use crate::event::TlsRequest;
use crate::tls::TlsServer;

/// Chooses the certificate for a TLS request, or refuses it (`None`).
pub type TlsChooser = dyn Fn(&TlsRequest) -> Option<TlsServer> + Send + Sync;

/// Chooses the certificate for a TLS request on a connection, or refuses
/// it (`None`): what a [`TlsAcceptor`] holds. The connection is the
/// driver's handle with its type erased (see
/// [`TlsAcceptor::with_connection`]).
pub type ErasedTlsChooser = dyn Fn(&dyn Any, &TlsRequest) -> Option<TlsServer> + Send + Sync;

/// What a listener does with the peer's TLS requests: which certificate
/// to present for each `serverName`, or whether to refuse.
///
/// ```
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
/// use beep_proto::TlsRequest;
/// use beep_proto::dispatch::TlsAcceptor;
/// let acceptor = TlsAcceptor::by_server_name([("localhost".to_string(), server)], None);
/// let request = |name: &str| TlsRequest { channel: 1, server_name: Some(name.into()), version: None };
/// assert!(acceptor.choose(&request("localhost")).is_some());
/// assert!(acceptor.choose(&request("elsewhere")).is_none());
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    choose: Arc<ErasedTlsChooser>,
}

impl TlsAcceptor {
    /// One certificate for every request.
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// let acceptor = beep_proto::dispatch::TlsAcceptor::new(server);
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
    /// assert!(acceptor.choose(&request).is_some());
    /// ```
    pub fn new(server: TlsServer) -> Self {
        Self::with(move |_| Some(server.clone()))
    }

    /// A certificate per `serverName` (RFC 3080 2.3.1.2: the name
    /// selects it), and `default` for requests without a name or with
    /// another one (none: refused).
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
    /// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// let acceptor = beep_proto::dispatch::TlsAcceptor::by_server_name([], Some(server));
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: Some("b.example".into()), version: None };
    /// assert!(acceptor.choose(&request).is_some());
    /// ```
    pub fn by_server_name(
        servers: impl IntoIterator<Item = (String, TlsServer)>,
        default: Option<TlsServer>,
    ) -> Self {
        let servers: HashMap<String, TlsServer> = servers
            .into_iter()
            .map(|(name, server)| (name.to_ascii_lowercase(), server))
            .collect();
        Self::with(move |request| {
            request
                .server_name
                .as_deref()
                .and_then(|name| servers.get(&name.to_ascii_lowercase()))
                .or(default.as_ref())
                .cloned()
        })
    }

    /// The application decides each request (PyVortex's accept handler
    /// and certificate handlers in one call): a certificate accepts, `None`
    /// refuses. It runs on the connection's dispatcher; a panic refuses.
    ///
    /// ```
    /// use beep_proto::dispatch::TlsAcceptor;
    /// let nobody = TlsAcceptor::with(|_request| None);
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
    /// assert!(nobody.choose(&request).is_none());
    /// ```
    pub fn with(choose: impl Fn(&TlsRequest) -> Option<TlsServer> + Send + Sync + 'static) -> Self {
        TlsAcceptor {
            choose: Arc::new(move |_connection: &dyn Any, request: &TlsRequest| choose(request)),
        }
    }

    /// Like [`TlsAcceptor::with`], with the connection the request came
    /// on (PyVortex's TLS handlers get it as `conn`): the driver's
    /// connection handle, of type `C`. The acceptor stores `choose`
    /// type-erased and refuses a request that comes with another type (a
    /// driver bug). beep-blocking's and beep-tokio's
    /// `Registry::set_tls_with_connection` are this with their
    /// `Connection`.
    ///
    /// ```
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// use beep_proto::dispatch::TlsAcceptor;
    /// // A driver whose connection handle is the peer's name.
    /// struct Conn(&'static str);
    /// let trusted_only = TlsAcceptor::with_connection(move |conn: &Conn, _request| {
    ///     (conn.0 == "trusted").then(|| server.clone())
    /// });
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
    /// assert!(trusted_only.choose_for(&Conn("trusted"), &request).is_some());
    /// assert!(trusted_only.choose_for(&Conn("stranger"), &request).is_none());
    /// assert!(trusted_only.choose_for(&42u32, &request).is_none()); // another type
    /// ```
    pub fn with_connection<C: Any>(
        choose: impl Fn(&C, &TlsRequest) -> Option<TlsServer> + Send + Sync + 'static,
    ) -> Self {
        TlsAcceptor {
            choose: Arc::new(move |connection: &dyn Any, request: &TlsRequest| {
                choose(connection.downcast_ref::<C>()?, request)
            }),
        }
    }

    /// The certificate for `request`, or `None` to refuse it (also when
    /// the chooser panics). An acceptor made with
    /// [`TlsAcceptor::with_connection`] is given `()` as the connection;
    /// a driver asks with [`TlsAcceptor::choose_for`].
    ///
    /// ```
    /// use beep_proto::dispatch::TlsAcceptor;
    /// let faulty = TlsAcceptor::with(|_| panic!("bug"));
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
    /// assert!(faulty.choose(&request).is_none());
    /// ```
    pub fn choose(&self, request: &TlsRequest) -> Option<TlsServer> {
        self.choose_for(&(), request)
    }

    /// The certificate for `request`, which came on `connection` (the
    /// driver's handle), or `None` to refuse it (also when the chooser
    /// panics).
    ///
    /// ```
    /// use beep_proto::dispatch::TlsAcceptor;
    /// let faulty = TlsAcceptor::with_connection(|_connection: &u32, _| panic!("bug"));
    /// let request = beep_proto::TlsRequest { channel: 1, server_name: None, version: None };
    /// assert!(faulty.choose_for(&7u32, &request).is_none());
    /// ```
    pub fn choose_for(&self, connection: &dyn Any, request: &TlsRequest) -> Option<TlsServer> {
        let choose = std::panic::AssertUnwindSafe(|| (self.choose)(connection, request));
        std::panic::catch_unwind(choose).ok().flatten()
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}
