//! Shared by the async test files: the runtime under test, a listener with
//! the test profiles, and raw TCP peers.

#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beep_proto::{Message, ReplyCode};
use beep_tokio::runtime::{AsyncStd, Runtime, Tokio};
use beep_tokio::{
    Error, Listener, Options, ProfileHandler, Registry, Reply, ShutdownHandle, StartDecision,
};
use futures_util::FutureExt;
use futures_util::future::RemoteHandle;

pub const ECHO: &str = "http://example.org/beep/echo";
pub const COUNT: &str = "http://example.org/beep/count";
pub const PANIC: &str = "http://example.org/beep/panic";
pub const PICKY: &str = "http://example.org/beep/picky";
pub const GATED: &str = "http://example.org/beep/gated";

/// Request timeout: generous, only there so that a bug fails instead of
/// hanging.
pub const T: Duration = Duration::from_secs(10);
/// Longest a whole scenario may take.
const SCENARIO: Duration = Duration::from_secs(120);

/// The runtime a scenario runs on.
#[derive(Clone, Debug)]
pub struct Env {
    pub runtime: Arc<dyn Runtime>,
}

impl Env {
    /// Default options on this runtime.
    pub fn options(&self) -> Options {
        self.with(Options::default())
    }

    /// `options` on this runtime.
    pub fn with(&self, options: Options) -> Options {
        Options {
            runtime: Some(self.runtime.clone()),
            ..options
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        self.runtime.sleep(duration).await
    }

    /// Runs `future` as a task; the handle gives its output.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> RemoteHandle<T> {
        let (task, handle) = future.remote_handle();
        self.runtime.spawn(Box::pin(task));
        handle
    }

    /// Awaits `future` for at most `limit`; `None` when it did not finish
    /// (the future is dropped: cancelled).
    pub async fn timeout<T>(&self, limit: Duration, future: impl Future<Output = T>) -> Option<T> {
        let future = std::pin::pin!(future);
        match futures_util::future::select(future, self.runtime.sleep(limit)).await {
            futures_util::future::Either::Left((value, _)) => Some(value),
            futures_util::future::Either::Right(_) => None,
        }
    }

    /// Awaits `future`, failing the test if it takes longer than `limit`.
    pub async fn within<T>(
        &self,
        limit: Duration,
        what: &str,
        future: impl Future<Output = T>,
    ) -> T {
        let future = std::pin::pin!(future);
        match futures_util::future::select(future, self.runtime.sleep(limit)).await {
            futures_util::future::Either::Left((value, _)) => value,
            futures_util::future::Either::Right(_) => panic!("{what}: no result in {limit:?}"),
        }
    }
}

/// Runs a scenario on a fresh multi-threaded tokio runtime.
pub fn on_tokio<F: Future<Output = ()>>(scenario: impl FnOnce(Env) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = Env {
            runtime: Arc::new(Tokio::current().unwrap()),
        };
        let guard = env.clone();
        guard.within(SCENARIO, "scenario", scenario(env)).await
    });
}

/// Runs a scenario on async-std's global executor.
pub fn on_async_std<F: Future<Output = ()>>(scenario: impl FnOnce(Env) -> F) {
    async_std::task::block_on(async {
        let env = Env {
            runtime: Arc::new(AsyncStd),
        };
        let guard = env.clone();
        guard.within(SCENARIO, "scenario", scenario(env)).await
    });
}

/// Makes one `#[test]` per runtime for each scenario function.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $(#[test] fn $name() { super::async_support::on_tokio(super::$name) })*
        }
        mod on_async_std {
            $(#[test] fn $name() { super::async_support::on_async_std(super::$name) })*
        }
    };
}

/// Holds the gated profile's replies until opened.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<event_wait::Signal>,
    /// Raised once a handler is waiting at the gate.
    pub reached: Arc<event_wait::Signal>,
}

impl Gate {
    pub fn open(&self) {
        self.open.raise();
    }

    async fn pass(&self) {
        self.reached.raise();
        self.open.wait().await;
    }
}

/// A flag with waiters, built on a futures channel (no runtime needed).
pub mod event_wait {
    use std::sync::Mutex;

    use futures_channel::oneshot;

    #[derive(Default)]
    pub struct Signal {
        state: Mutex<(bool, Vec<oneshot::Sender<()>>)>,
    }

    impl Signal {
        pub fn raise(&self) {
            let mut st = self.state.lock().unwrap();
            st.0 = true;
            for tx in st.1.drain(..) {
                let _ = tx.send(());
            }
        }

        pub async fn wait(&self) {
            let rx = {
                let mut st = self.state.lock().unwrap();
                if st.0 {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                st.1.push(tx);
                rx
            };
            let _ = rx.await;
        }
    }
}

/// The test profiles: echo, count (ANS/NUL), panic, picky (start and close
/// handlers), gated (replies once the gate opens).
pub fn registry(server_names: Arc<Mutex<Vec<Option<String>>>>, gate: Gate) -> Registry {
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }),
    );
    registry.register(
        COUNT,
        ProfileHandler::new(|channel, m| async move {
            let n: u32 = String::from_utf8_lossy(m.message.body())
                .parse()
                .unwrap_or(3);
            for i in 0..n {
                let _ = channel
                    .reply_ans(m.msgno, Message::new(i.to_string()))
                    .await;
            }
            let _ = channel.reply_nul(m.msgno).await;
        }),
    );
    registry.register(
        PANIC,
        ProfileHandler::new(|channel, m| async move {
            if m.message.body().starts_with(b"panic") {
                panic!("handler panics on purpose");
            }
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }),
    );
    registry.register(
        PICKY,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        })
        .on_start(move |request, offer| {
            server_names
                .lock()
                .unwrap()
                .push(request.server_name.clone());
            match offer.content.as_deref() {
                Some(b"let me in") => StartDecision::Accept(Some("welcome".into())),
                _ => StartDecision::Deny(ReplyCode::AUTHENTICATION_REQUIRED, "say the word".into()),
            }
        })
        .on_close(|_| false),
    );
    registry.register(
        GATED,
        ProfileHandler::new(move |channel, m| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            }
        }),
    );
    registry
}

/// A beep-tokio listener serving the test profiles on loopback.
pub struct Server {
    pub addr: SocketAddr,
    pub stop: ShutdownHandle,
    pub gate: Gate,
    serving: Option<RemoteHandle<Result<(), Error>>>,
    /// serverNames seen by the picky profile's start handler.
    pub server_names: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    /// Stops the listener and waits until it has released its sessions.
    pub async fn stop(mut self, env: &Env) {
        self.stop.shutdown();
        if let Some(serving) = self.serving.take() {
            env.within(T * 2, "listener shutdown", serving)
                .await
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(serving) = self.serving.take() {
            serving.forget();
        }
    }
}

pub async fn server_with(env: &Env, options: Options) -> Server {
    let server_names = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate::default();
    let registry = registry(server_names.clone(), gate.clone());
    let listener = Listener::bind("127.0.0.1:0", registry, env.with(options))
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = Some(env.spawn(listener.serve()));
    Server {
        addr,
        stop,
        gate,
        serving,
        server_names,
    }
}

pub async fn server(env: &Env) -> Server {
    server_with(env, Options::default()).await
}

pub fn body(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

/// Reads from `stream` until `pattern` has been seen (or EOF).
pub fn read_until(stream: &mut TcpStream, pattern: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(pattern.len()).any(|w| w == pattern) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

pub const GREETING: &str = "Content-Type: application/beep+xml\r\n\r\n<greeting><profile uri='http://example.org/beep/echo' /></greeting>\r\n";

/// The listener's greeting frame offering the echo profile.
pub fn greeting_frame() -> String {
    format!("RPY 0 0 . 0 {}\r\n{GREETING}END\r\n", GREETING.len())
}

/// A raw TCP peer on a thread: sends `script`, waits for the client's
/// start request, then closes the connection.
pub fn raw_peer(script: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        stream.write_all(&script).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        read_until(&mut stream, b"</start>");
    });
    (addr, thread)
}
