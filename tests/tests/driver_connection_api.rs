//! The drivers' connection API that PyVortex's API needs, over loopback
//! TCP, in both drivers (beep-tokio's scenarios on tokio and async-std):
//! a connection's identity (`Connection::id`, equal handles), the
//! connection given to the TLS and SASL deciders
//! (`Registry::set_tls_with_connection`,
//! `Registry::set_sasl_with_connection`), clients that serve profiles to
//! the listener (`Connection::connect_with_registry`), and pools whose
//! channels a closure makes (`ChannelPool::with_channel_maker`).

mod async_support;
mod tls_support;

use std::time::Duration;

use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode};

/// The listener's profile: echoes, and hands the listener's side of its
/// connection to the test.
const ECHO: &str = "http://example.org/beep/echo";
/// The client's profile, which the listener starts on the client.
const CALLBACK: &str = "http://example.org/beep/callback";
/// Every wait is bounded by this.
const T: Duration = Duration::from_secs(10);

/// The body of an RPY, failing the test on anything else.
fn rpy_body(reply: beep_proto::dispatch::Reply) -> Vec<u8> {
    match reply {
        beep_proto::dispatch::Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

mod blocking {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, mpsc};

    use beep_blocking::{
        AuthAnswer, ChannelPool, Connection, Error, Listener, Mechanism, Options, ProfileHandler,
        Registry, SaslClient, ShutdownHandle,
    };

    use super::tls_support::Pki;
    use super::*;

    /// A listener served on its own thread, stopped when dropped.
    struct Server {
        addr: SocketAddr,
        stop: ShutdownHandle,
        thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
        /// The listener's side of the connection of each echoed message.
        echoed: mpsc::Receiver<Connection>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.shutdown();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    impl Server {
        /// The listener's side of the connection the last echo came on.
        fn echoed(&self) -> Connection {
            self.echoed
                .recv_timeout(T)
                .expect("the echo handler reported its connection")
        }
    }

    /// Serves [`ECHO`] and whatever `setup` adds.
    fn serve(setup: impl FnOnce(&mut Registry)) -> Server {
        let (echoed_tx, echoed) = mpsc::channel();
        let mut registry = Registry::new();
        registry.register(
            ECHO,
            ProfileHandler::new(move |channel, m| {
                let _ = echoed_tx.send(channel.connection().clone());
                let _ = channel.reply_rpy(m.msgno, m.message);
            }),
        );
        setup(&mut registry);
        let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        let thread = Some(std::thread::spawn(move || listener.serve()));
        Server {
            addr,
            stop,
            thread,
            echoed,
        }
    }

    /// One echo on a new channel of `conn`, closed afterwards.
    fn echo(conn: &Connection) {
        let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
        let reply = channel.request(Message::new("ping"), T).unwrap();
        assert_eq!(rpy_body(reply), b"ping");
        channel.close().unwrap();
    }

    /// Two connections have different ids; every handle of one (its
    /// clones, the handles its channels and its listener's handlers get)
    /// has the same id, compares equal and hashes alike; the two sides of
    /// one TCP connection are two connections.
    #[test]
    fn connection_ids_differ_between_connections_and_match_across_every_handle() {
        let (started_tx, started) = mpsc::channel();
        let server = serve(|registry| {
            let handler = ProfileHandler::new(|channel, m| {
                let _ = channel.reply_rpy(m.msgno, m.message);
            })
            .on_start_with_connection(move |conn, _request, _offer| {
                let _ = started_tx.send(conn.id());
                beep_blocking::StartDecision::Accept(None)
            });
            registry.register(CALLBACK, handler);
        });
        let a = Connection::connect(server.addr, Options::default()).unwrap();
        let b = Connection::connect(server.addr, Options::default()).unwrap();
        assert_ne!(a.id(), b.id());
        assert_ne!(a, b);
        assert_eq!(a.clone().id(), a.id());
        assert_eq!(a.clone(), a);

        echo(&a);
        let a_served = server.echoed();
        echo(&b);
        let b_served = server.echoed();
        assert_ne!(a_served.id(), b_served.id());
        assert!(![a.id(), b.id()].contains(&a_served.id()));
        // The same served connection for its start handler and for every
        // channel's message handler.
        let channel = a.open_channel(Profile::new(CALLBACK), None).unwrap();
        assert_eq!(started.recv_timeout(T).unwrap(), a_served.id());
        assert_eq!(channel.connection(), &a);
        echo(&a);
        assert_eq!(server.echoed(), a_served);

        // Hashed by the id, which never changes: the lint's worry does not apply.
        #[allow(clippy::mutable_key_type)]
        let set: HashSet<Connection> = [a.clone(), a.clone(), b.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        a.close().unwrap();
        b.close().unwrap();
    }

    /// RFC 3080 4.1: the SASL decider gets the listener's side of the
    /// connection the attempt came on (the one the profile handlers of
    /// that session see), and its answer holds: bob is accepted, eve
    /// denied (535), each on a connection of its own.
    #[test]
    fn rfc3080_4_1_the_sasl_decider_sees_the_served_connection_and_its_answer_holds() {
        let (decided_tx, decided) = mpsc::channel();
        let server = serve(|registry| {
            registry.set_sasl_with_connection(&[Mechanism::Plain], move |conn, request| {
                let _ = decided_tx.send((conn.clone(), request.authcid.clone()));
                match (request.authcid.as_deref(), request.password.as_deref()) {
                    (Some("bob"), Some("secret")) => AuthAnswer::Accept,
                    _ => AuthAnswer::Deny,
                }
            });
        });
        let bob = Connection::connect(server.addr, Options::default()).unwrap();
        let info = bob.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
        assert_eq!(info.authcid, "bob");
        let (bob_decided, user) = decided.recv_timeout(T).unwrap();
        assert_eq!(user.as_deref(), Some("bob"));
        echo(&bob);
        let bob_served = server.echoed();
        assert_eq!(bob_decided.id(), bob_served.id());
        assert_ne!(bob_decided.id(), bob.id());
        // The handle it got is the live connection, authenticated since.
        assert_eq!(
            bob_decided.auth_info().map(|i| i.authcid).as_deref(),
            Some("bob")
        );

        let eve = Connection::connect(server.addr, Options::default()).unwrap();
        match eve.start_sasl(SaslClient::plain("eve", "secret")) {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::AUTHENTICATION_FAILURE)
            }
            other => panic!("expected a 535 refusal, got {other:?}"),
        }
        let (eve_decided, user) = decided.recv_timeout(T).unwrap();
        assert_eq!(user.as_deref(), Some("eve"));
        assert_ne!(eve_decided.id(), bob_decided.id());
        assert!(!eve_decided.is_authenticated() && !eve.is_authenticated());
        bob.close().unwrap();
        eve.close().unwrap();
    }

    /// RFC 3080 3.1: the TLS decider gets the listener's side of the
    /// connection that asks and chooses by it: a connection the listener
    /// has marked is refused (the session goes on in plain), another gets
    /// the certificate, and the handle the decider got is the one its
    /// handlers see.
    #[test]
    fn rfc3080_3_1_the_tls_decider_sees_the_connection_and_chooses_the_certificate() {
        let pki = Pki::new();
        let leaf = pki.leaf(&["localhost"]);
        let server_cert = leaf.server();
        let refused: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let (asked_tx, asked) = mpsc::channel();
        let deny = refused.clone();
        let server = serve(|registry| {
            registry.set_tls_with_connection(move |conn, request| {
                let _ = asked_tx.send((conn.clone(), request.server_name.clone()));
                let marked = deny.lock().unwrap().contains(&conn.id());
                (!marked).then(|| server_cert.clone())
            });
        });

        // The listener marks this connection (by the id its handlers see).
        let marked = Connection::connect(server.addr, Options::default()).unwrap();
        echo(&marked);
        refused.lock().unwrap().insert(server.echoed().id());
        match marked.start_tls(pki.client("localhost")) {
            Err(Error::Refused { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        let (asked_conn, _) = asked.recv_timeout(T).unwrap();
        assert!(refused.lock().unwrap().contains(&asked_conn.id()));
        assert!(marked.is_ok() && !marked.is_tls_active());

        let trusted = Connection::connect(server.addr, Options::default()).unwrap();
        let info = trusted.start_tls(pki.client("localhost")).unwrap();
        assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
        let (asked_conn, server_name) = asked.recv_timeout(T).unwrap();
        assert_eq!(server_name.as_deref(), Some("localhost"));
        assert!(asked_conn.is_tls_active());
        echo(&trusted);
        assert_eq!(server.echoed(), asked_conn);
        marked.close().unwrap();
        trusted.close().unwrap();
    }

    /// A client's registry, serving [`CALLBACK`]: answers "client:" and
    /// the message.
    fn callback_registry() -> Registry {
        let mut registry = Registry::new();
        registry.register(
            CALLBACK,
            ProfileHandler::new(|channel, m| {
                let mut body = b"client: ".to_vec();
                body.extend_from_slice(m.message.body());
                let _ = channel.reply_rpy(m.msgno, Message::new(body));
            }),
        );
        registry
    }

    /// RFC 3080 2.3.1.2: either peer may start channels. A client made
    /// with `connect_with_registry` advertises and serves its registry's
    /// profiles: the listener starts a channel on it from the handle its
    /// handlers got, and the client's handler answers.
    #[test]
    fn a_client_made_with_connect_with_registry_serves_a_channel_the_listener_starts() {
        let server = serve(|_| {});
        let client =
            Connection::connect_with_registry(server.addr, callback_registry(), Options::default())
                .unwrap();
        echo(&client);
        let served = server.echoed();
        assert!(served.peer_greeting().profiles.contains(&CALLBACK.into()));
        let channel = served.open_channel(Profile::new(CALLBACK), None).unwrap();
        assert_eq!(channel.number() % 2, 0, "the listener's channels are even");
        let reply = channel.request(Message::new("hello"), T).unwrap();
        assert_eq!(rpy_body(reply), b"client: hello");
        channel.close().unwrap();
        client.close().unwrap();
    }

    /// A client made with plain `connect` serves nothing: the listener's
    /// start is refused with 550.
    #[test]
    fn a_client_made_with_connect_refuses_a_channel_the_listener_starts() {
        let server = serve(|_| {});
        let client = Connection::connect(server.addr, Options::default()).unwrap();
        echo(&client);
        let served = server.echoed();
        match served.open_channel(Profile::new(CALLBACK), None) {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
            }
            other => panic!("expected a 550 refusal, got {other:?}"),
        }
        assert!(client.is_ok());
        client.close().unwrap();
    }

    /// A pool made with a channel maker (PyVortex's `create_channel`)
    /// opens every channel through it: the initial ones, and one more on
    /// demand, each with the maker's serverName.
    #[test]
    fn a_pool_made_with_a_channel_maker_opens_every_channel_through_it() {
        let server = serve(|_| {});
        let conn = Connection::connect(server.addr, Options::default()).unwrap();
        let made = Arc::new(Mutex::new(0));
        let counted = made.clone();
        let pool = ChannelPool::with_channel_maker(&conn, 1, 2, move |conn| {
            *counted.lock().unwrap() += 1;
            conn.open_channel(Profile::new(ECHO), Some("pool.example".into()))
        })
        .unwrap();
        assert_eq!((pool.len(), *made.lock().unwrap()), (1, 1));
        let first = pool.next_ready(T).unwrap();
        let second = pool.next_ready(T).unwrap();
        assert_eq!((pool.len(), *made.lock().unwrap()), (2, 2));
        let reply = second.request(Message::new("pooled"), T).unwrap();
        assert_eq!(rpy_body(reply), b"pooled");
        // The listener bound the maker's serverName (RFC 3080 2.3.1.2).
        let served = server.echoed();
        assert_eq!(served.server_name().as_deref(), Some("pool.example"));
        drop((first, second));
        assert_eq!(pool.idle(), 2);
        conn.close().unwrap();
    }
}

mod tokio_driver {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use beep_tokio::{
        AuthAnswer, ChannelPool, Connection, Error, Listener, Mechanism, ProfileHandler, Registry,
        SaslClient, ShutdownHandle, StartDecision,
    };
    use futures_channel::mpsc;
    use futures_util::StreamExt;
    use futures_util::future::RemoteHandle;

    use super::async_support::{self, Env};
    use super::tls_support::Pki;
    use super::*;

    crate::on_both_runtimes!(
        connection_ids_differ_between_connections_and_match_across_every_handle,
        rfc3080_4_1_the_sasl_decider_sees_the_served_connection_and_its_answer_holds,
        rfc3080_3_1_the_tls_decider_sees_the_connection_and_chooses_the_certificate,
        a_client_made_with_connect_with_registry_serves_a_channel_the_listener_starts,
        a_client_made_with_connect_refuses_a_channel_the_listener_starts,
        a_pool_made_with_a_channel_maker_opens_every_channel_through_it,
    );

    /// Receives the next report from a handler, within [`T`].
    async fn next<V>(env: &Env, rx: &mut mpsc::UnboundedReceiver<V>, what: &str) -> V {
        env.within(T, what, rx.next())
            .await
            .expect("the reporting handler is gone")
    }

    /// A listener served as a task, stopped when dropped.
    struct Server {
        addr: SocketAddr,
        stop: ShutdownHandle,
        serving: Option<RemoteHandle<Result<(), Error>>>,
        /// The listener's side of the connection of each echoed message.
        echoed: mpsc::UnboundedReceiver<Connection>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.shutdown();
            if let Some(serving) = self.serving.take() {
                serving.forget();
            }
        }
    }

    impl Server {
        /// The listener's side of the connection the last echo came on.
        async fn echoed(&mut self, env: &Env) -> Connection {
            next(env, &mut self.echoed, "the echo handler's connection").await
        }
    }

    /// Serves [`ECHO`] and whatever `setup` adds.
    async fn serve(env: &Env, setup: impl FnOnce(&mut Registry)) -> Server {
        let (echoed_tx, echoed) = mpsc::unbounded();
        let mut registry = Registry::new();
        registry.register(
            ECHO,
            ProfileHandler::new(move |channel, m| {
                let _ = echoed_tx.unbounded_send(channel.connection().clone());
                async move {
                    let _ = channel.reply_rpy(m.msgno, m.message).await;
                }
            }),
        );
        setup(&mut registry);
        let listener = Listener::bind("127.0.0.1:0", registry, env.options())
            .await
            .unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        let serving = Some(env.spawn(listener.serve()));
        Server {
            addr,
            stop,
            serving,
            echoed,
        }
    }

    async fn connect(env: &Env, addr: SocketAddr) -> Connection {
        Connection::connect(addr, env.options()).await.unwrap()
    }

    /// One echo on a new channel of `conn`, closed afterwards.
    async fn echo(conn: &Connection) {
        let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
        let reply = channel.request(Message::new("ping"), T).await.unwrap();
        assert_eq!(rpy_body(reply), b"ping");
        channel.close().await.unwrap();
    }

    /// Two connections have different ids; every handle of one (its
    /// clones, the handles its channels and its listener's handlers get)
    /// has the same id, compares equal and hashes alike; the two sides of
    /// one TCP connection are two connections.
    async fn connection_ids_differ_between_connections_and_match_across_every_handle(env: Env) {
        let (started_tx, mut started) = mpsc::unbounded();
        let mut server = serve(&env, |registry| {
            let handler = ProfileHandler::new(|channel, m| async move {
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            })
            .on_start_with_connection(move |conn, _request, _offer| {
                let _ = started_tx.unbounded_send(conn.id());
                StartDecision::Accept(None)
            });
            registry.register(CALLBACK, handler);
        })
        .await;
        let a = connect(&env, server.addr).await;
        let b = connect(&env, server.addr).await;
        assert_ne!(a.id(), b.id());
        assert_ne!(a, b);
        assert_eq!(a.clone().id(), a.id());
        assert_eq!(a.clone(), a);

        echo(&a).await;
        let a_served = server.echoed(&env).await;
        echo(&b).await;
        let b_served = server.echoed(&env).await;
        assert_ne!(a_served.id(), b_served.id());
        assert!(![a.id(), b.id()].contains(&a_served.id()));
        let channel = a.open_channel(Profile::new(CALLBACK), None).await.unwrap();
        assert_eq!(
            next(&env, &mut started, "the start handler").await,
            a_served.id()
        );
        assert_eq!(channel.connection(), &a);
        echo(&a).await;
        assert_eq!(server.echoed(&env).await, a_served);

        // Hashed by the id, which never changes: the lint's worry does not apply.
        #[allow(clippy::mutable_key_type)]
        let set: HashSet<Connection> = [a.clone(), a.clone(), b.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// RFC 3080 4.1: the SASL decider gets the listener's side of the
    /// connection the attempt came on (the one the profile handlers of
    /// that session see), and its answer holds: bob is accepted, eve
    /// denied (535), each on a connection of its own.
    async fn rfc3080_4_1_the_sasl_decider_sees_the_served_connection_and_its_answer_holds(
        env: Env,
    ) {
        let (decided_tx, mut decided) = mpsc::unbounded();
        let mut server = serve(&env, |registry| {
            registry.set_sasl_with_connection(&[Mechanism::Plain], move |conn, request| {
                let _ = decided_tx.unbounded_send((conn.clone(), request.authcid.clone()));
                match (request.authcid.as_deref(), request.password.as_deref()) {
                    (Some("bob"), Some("secret")) => AuthAnswer::Accept,
                    _ => AuthAnswer::Deny,
                }
            });
        })
        .await;
        let bob = connect(&env, server.addr).await;
        let info = bob
            .start_sasl(SaslClient::plain("bob", "secret"))
            .await
            .unwrap();
        assert_eq!(info.authcid, "bob");
        let (bob_decided, user) = next(&env, &mut decided, "the SASL decider").await;
        assert_eq!(user.as_deref(), Some("bob"));
        echo(&bob).await;
        let bob_served = server.echoed(&env).await;
        assert_eq!(bob_decided.id(), bob_served.id());
        assert_ne!(bob_decided.id(), bob.id());
        assert_eq!(
            bob_decided.auth_info().map(|i| i.authcid).as_deref(),
            Some("bob")
        );

        let eve = connect(&env, server.addr).await;
        match eve.start_sasl(SaslClient::plain("eve", "secret")).await {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::AUTHENTICATION_FAILURE)
            }
            other => panic!("expected a 535 refusal, got {other:?}"),
        }
        let (eve_decided, user) = next(&env, &mut decided, "the SASL decider").await;
        assert_eq!(user.as_deref(), Some("eve"));
        assert_ne!(eve_decided.id(), bob_decided.id());
        assert!(!eve_decided.is_authenticated() && !eve.is_authenticated());
        bob.close().await.unwrap();
        eve.close().await.unwrap();
    }

    /// RFC 3080 3.1: the TLS decider gets the listener's side of the
    /// connection that asks and chooses by it: a connection the listener
    /// has marked is refused (the session goes on in plain), another gets
    /// the certificate, and the handle the decider got is the one its
    /// handlers see.
    async fn rfc3080_3_1_the_tls_decider_sees_the_connection_and_chooses_the_certificate(env: Env) {
        let pki = Pki::new();
        let leaf = pki.leaf(&["localhost"]);
        let server_cert = leaf.server();
        let refused: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let (asked_tx, mut asked) = mpsc::unbounded();
        let deny = refused.clone();
        let mut server = serve(&env, |registry| {
            registry.set_tls_with_connection(move |conn, request| {
                let _ = asked_tx.unbounded_send((conn.clone(), request.server_name.clone()));
                let marked = deny.lock().unwrap().contains(&conn.id());
                (!marked).then(|| server_cert.clone())
            });
        })
        .await;

        let marked = connect(&env, server.addr).await;
        echo(&marked).await;
        let marked_id = server.echoed(&env).await.id();
        refused.lock().unwrap().insert(marked_id);
        match marked.start_tls(pki.client("localhost")).await {
            Err(Error::Refused { .. }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        let (asked_conn, _) = next(&env, &mut asked, "the TLS decider").await;
        assert_eq!(asked_conn.id(), marked_id);
        assert!(marked.is_ok() && !marked.is_tls_active());

        let trusted = connect(&env, server.addr).await;
        let info = trusted.start_tls(pki.client("localhost")).await.unwrap();
        assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
        let (asked_conn, server_name) = next(&env, &mut asked, "the TLS decider").await;
        assert_eq!(server_name.as_deref(), Some("localhost"));
        assert!(asked_conn.is_tls_active());
        echo(&trusted).await;
        assert_eq!(server.echoed(&env).await, asked_conn);
        marked.close().await.unwrap();
        trusted.close().await.unwrap();
    }

    /// A client's registry, serving [`CALLBACK`]: answers "client:" and
    /// the message.
    fn callback_registry() -> Registry {
        let mut registry = Registry::new();
        registry.register(
            CALLBACK,
            ProfileHandler::new(|channel, m| async move {
                let mut body = b"client: ".to_vec();
                body.extend_from_slice(m.message.body());
                let _ = channel.reply_rpy(m.msgno, Message::new(body)).await;
            }),
        );
        registry
    }

    /// RFC 3080 2.3.1.2: either peer may start channels. A client made
    /// with `connect_with_registry` advertises and serves its registry's
    /// profiles: the listener starts a channel on it from the handle its
    /// handlers got, and the client's handler answers.
    async fn a_client_made_with_connect_with_registry_serves_a_channel_the_listener_starts(
        env: Env,
    ) {
        let mut server = serve(&env, |_| {}).await;
        let client =
            Connection::connect_with_registry(server.addr, callback_registry(), env.options())
                .await
                .unwrap();
        echo(&client).await;
        let served = server.echoed(&env).await;
        assert!(served.peer_greeting().profiles.contains(&CALLBACK.into()));
        let channel = served
            .open_channel(Profile::new(CALLBACK), None)
            .await
            .unwrap();
        assert_eq!(channel.number() % 2, 0, "the listener's channels are even");
        let reply = channel.request(Message::new("hello"), T).await.unwrap();
        assert_eq!(rpy_body(reply), b"client: hello");
        channel.close().await.unwrap();
        client.close().await.unwrap();
    }

    /// A client made with plain `connect` serves nothing: the listener's
    /// start is refused with 550.
    async fn a_client_made_with_connect_refuses_a_channel_the_listener_starts(env: Env) {
        let mut server = serve(&env, |_| {}).await;
        let client = connect(&env, server.addr).await;
        echo(&client).await;
        let served = server.echoed(&env).await;
        match served.open_channel(Profile::new(CALLBACK), None).await {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
            }
            other => panic!("expected a 550 refusal, got {other:?}"),
        }
        assert!(client.is_ok());
        client.close().await.unwrap();
    }

    /// A pool made with a channel maker (PyVortex's `create_channel`)
    /// opens every channel through it: the initial ones, and one more on
    /// demand, each with the maker's serverName.
    async fn a_pool_made_with_a_channel_maker_opens_every_channel_through_it(env: Env) {
        let mut server = serve(&env, |_| {}).await;
        let conn = connect(&env, server.addr).await;
        let made = Arc::new(Mutex::new(0));
        let counted = made.clone();
        let pool = ChannelPool::with_channel_maker(&conn, 1, 2, move |conn| {
            *counted.lock().unwrap() += 1;
            async move {
                conn.open_channel(Profile::new(ECHO), Some("pool.example".into()))
                    .await
            }
        })
        .await
        .unwrap();
        assert_eq!((pool.len(), *made.lock().unwrap()), (1, 1));
        let first = pool.next_ready(T).await.unwrap();
        let second = pool.next_ready(T).await.unwrap();
        assert_eq!((pool.len(), *made.lock().unwrap()), (2, 2));
        let reply = second.request(Message::new("pooled"), T).await.unwrap();
        assert_eq!(rpy_body(reply), b"pooled");
        // The listener bound the maker's serverName (RFC 3080 2.3.1.2).
        let served = server.echoed(&env).await;
        assert_eq!(served.server_name().as_deref(), Some("pool.example"));
        drop((first, second));
        assert_eq!(pool.idle(), 2);
        conn.close().await.unwrap();
    }
}
