//! The drivers talking to each other over loopback TCP: beep-blocking
//! against beep-tokio both ways, and beep-tokio on async-std against
//! beep-tokio on tokio both ways. Each side uses only its own crate's API.

mod async_support;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_support::{COUNT, ECHO, Env, GATED, PICKY, T, body, on_async_std, registry, server};
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode};
use futures_util::future::join_all;

/// The conversation every client holds: echo with headers, answers, a
/// refused start with its code, pipelined requests in order, a channel
/// close, and the release.
mod blocking_client {
    use super::*;
    use beep_blocking::{CloseReason, Connection, Error, Options, Reply};

    pub fn converse(addr: std::net::SocketAddr) {
        let conn = Connection::connect(addr, Options::default()).unwrap();
        assert!(conn.peer_greeting().profiles.contains(&ECHO.to_string()));
        let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
        let m = Message::new("across drivers").with_header("Content-Type", "text/plain");
        match echo.request(m.clone(), T).unwrap() {
            Reply::Rpy(reply) => assert_eq!(reply, m),
            other => panic!("{other:?}"),
        }
        let count = conn.open_channel(Profile::new(COUNT), None).unwrap();
        match count.request(Message::new("4"), T).unwrap() {
            Reply::Answers(answers) => assert_eq!(answers.len(), 4),
            other => panic!("{other:?}"),
        }
        match conn.open_channel(Profile::new(PICKY), None) {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::AUTHENTICATION_REQUIRED)
            }
            other => panic!("{other:?}"),
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..200u32 {
            let tx = tx.clone();
            echo.request_with(Message::new(i.to_string()), move |r| {
                tx.send((i, r)).unwrap();
            })
            .unwrap();
        }
        for i in 0..200u32 {
            let (n, reply) = rx.recv_timeout(T).unwrap();
            assert_eq!(n, i);
            match reply.unwrap() {
                Reply::Rpy(m) => assert_eq!(m.body(), &i.to_string()),
                other => panic!("{other:?}"),
            }
        }
        count.close().unwrap();
        conn.close().unwrap();
        assert!(conn.wait_closed(T).is_some());
        assert_eq!(conn.close_reason(), Some(CloseReason::Released));
    }
}

mod tokio_client {
    use super::*;
    use beep_tokio::{CloseReason, Connection, Error, Reply};

    pub async fn converse(env: &Env, addr: std::net::SocketAddr) {
        let conn = Connection::connect(addr, env.options()).await.unwrap();
        assert!(conn.peer_greeting().profiles.contains(&ECHO.to_string()));
        let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
        let m = Message::new("across drivers").with_header("Content-Type", "text/plain");
        match echo.request(m.clone(), T).await.unwrap() {
            Reply::Rpy(reply) => assert_eq!(reply, m),
            other => panic!("{other:?}"),
        }
        let count = conn.open_channel(Profile::new(COUNT), None).await.unwrap();
        match count.request(Message::new("4"), T).await.unwrap() {
            Reply::Answers(answers) => assert_eq!(answers.len(), 4),
            other => panic!("{other:?}"),
        }
        match conn.open_channel(Profile::new(PICKY), None).await {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::AUTHENTICATION_REQUIRED)
            }
            other => panic!("{other:?}"),
        }
        let replies =
            join_all((0..200u32).map(|i| echo.request(Message::new(i.to_string()), T))).await;
        for (i, reply) in replies.into_iter().enumerate() {
            assert_eq!(body(reply.unwrap()), i.to_string().into_bytes());
        }
        count.close().await.unwrap();
        conn.close().await.unwrap();
        assert_eq!(
            env.within(T, "wait_closed", conn.wait_closed()).await,
            CloseReason::Released
        );
    }
}

/// A beep-blocking listener with the same profiles as the async one.
struct BlockingServer {
    addr: std::net::SocketAddr,
    stop: beep_blocking::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), beep_blocking::Error>>>,
}

impl BlockingServer {
    fn start() -> Self {
        use beep_blocking::{Listener, Options, ProfileHandler, Registry, StartDecision};
        let mut registry = Registry::new();
        registry.register(
            ECHO,
            ProfileHandler::new(|channel, m| {
                let _ = channel.reply_rpy(m.msgno, m.message);
            }),
        );
        registry.register(
            COUNT,
            ProfileHandler::new(|channel, m| {
                let n: u32 = String::from_utf8_lossy(m.message.body())
                    .parse()
                    .unwrap_or(3);
                for i in 0..n {
                    let _ = channel.reply_ans(m.msgno, Message::new(i.to_string()));
                }
                let _ = channel.reply_nul(m.msgno);
            }),
        );
        registry.register(
            PICKY,
            ProfileHandler::new(|_, _| {}).on_start(|_, _| {
                StartDecision::Deny(ReplyCode::AUTHENTICATION_REQUIRED, "say the word".into())
            }),
        );
        let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        let thread = Some(std::thread::spawn(move || listener.serve()));
        BlockingServer { addr, stop, thread }
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tokio_env(rt: &tokio::runtime::Runtime) -> Env {
    Env {
        runtime: Arc::new(beep_tokio::runtime::Tokio::from_handle(rt.handle().clone())),
    }
}

#[test]
fn blocking_client_against_tokio_listener() {
    let rt = tokio_runtime();
    let env = tokio_env(&rt);
    let server = rt.block_on(server(&env));
    // Several blocking clients at once, each on its own thread.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || blocking_client::converse(addr))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    rt.block_on(server.stop(&env));
}

#[test]
fn tokio_client_against_blocking_listener() {
    let server = BlockingServer::start();
    let rt = tokio_runtime();
    let env = tokio_env(&rt);
    rt.block_on(async {
        let conversations = (0..4).map(|_| tokio_client::converse(&env, server.addr));
        join_all(conversations).await;
    });
}

#[test]
fn a_blocking_listener_shutdown_releases_a_tokio_client() {
    let server = BlockingServer::start();
    let rt = tokio_runtime();
    let env = tokio_env(&rt);
    let conn = rt.block_on(async {
        let conn = beep_tokio::Connection::connect(server.addr, env.options())
            .await
            .unwrap();
        let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
        let reply = echo.request(Message::new("before"), T).await.unwrap();
        assert_eq!(body(reply), b"before");
        conn
    });
    drop(server);
    let reason = rt.block_on(env.within(T, "wait_closed", conn.wait_closed()));
    assert_eq!(reason, beep_tokio::CloseReason::Released);
}

#[test]
fn async_std_client_against_tokio_listener() {
    let rt = tokio_runtime();
    let tokio = tokio_env(&rt);
    let server = rt.block_on(server(&tokio));
    on_async_std(|env| async move {
        let conversations = (0..4).map(|_| tokio_client::converse(&env, server.addr));
        join_all(conversations).await;
        // A handler on the tokio side awaiting at the gate does not stop
        // the async-std side's other channels.
        let conn = beep_tokio::Connection::connect(server.addr, env.options())
            .await
            .unwrap();
        let gated = conn.open_channel(Profile::new(GATED), None).await.unwrap();
        let pending = env.spawn({
            let gated = gated.clone();
            async move { gated.request(Message::new("held"), T).await }
        });
        env.within(T, "handler reached", server.gate.reached.wait())
            .await;
        server.gate.open();
        assert_eq!(body(env.within(T, "held", pending).await.unwrap()), b"held");
        conn.close().await.unwrap();
        rt.block_on(server.stop(&tokio));
    });
}

#[test]
fn tokio_client_against_async_std_listener() {
    on_async_std(|env| async move {
        let names = Arc::new(Mutex::new(Vec::new()));
        let registry = registry(names, Default::default());
        let options = env.options();
        let listener = beep_tokio::Listener::bind("127.0.0.1:0", registry, options)
            .await
            .unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        let serving = env.spawn(listener.serve());
        // The client runs on a tokio runtime of its own thread.
        let client = std::thread::spawn(move || {
            let rt = tokio_runtime();
            let tokio = tokio_env(&rt);
            rt.block_on(tokio_client::converse(&tokio, addr));
        });
        while !client.is_finished() {
            env.sleep(Duration::from_millis(20)).await;
        }
        client.join().unwrap();
        stop.shutdown();
        env.within(T, "serve", serving).await.unwrap();
    });
}
