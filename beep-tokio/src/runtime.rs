//! The few things the driver needs from an async runtime: spawn a task,
//! sleep, resolve a host name, connect and listen on TCP.
//!
//! Everything else (reading, writing, waking waiters, running handlers) is
//! written against [`futures_io::AsyncRead`]/[`futures_io::AsyncWrite`],
//! futures channels and `event-listener`, which work on any executor. A new
//! runtime (smol, glommio...) is one more implementation of [`Runtime`],
//! like the tokio one in `runtime/tokio.rs` and the async-std one in
//! `runtime/async_std.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{Either, select};

#[cfg(feature = "async-std")]
mod async_std;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "async-std")]
pub use self::async_std::AsyncStd;
#[cfg(feature = "tokio")]
pub use self::tokio::Tokio;

use crate::error::Error;

/// A boxed, sendable future: what [`Runtime`] methods return.
///
/// ```
/// let f: beep_tokio::runtime::BoxFuture<'static, u8> = Box::pin(async { 7 });
/// # drop(f);
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream a BEEP session can run over: any `futures-io` reader and
/// writer (a TCP stream of any runtime, an in-memory pipe, a TLS stream).
///
/// Tokio streams implement tokio's own I/O traits; adapt them with
/// `tokio_util::compat::TokioAsyncReadCompatExt::compat`.
///
/// After a release, the driver closes the stream's writing side
/// (`poll_close`) and reads on until the peer closes (within the connect
/// timeout), so that closing finds no unread input and the kernel does
/// not reset the connection. `poll_close` should therefore end only the
/// sending half, as a tokio stream behind `compat` does (`shutdown`); a
/// stream whose `poll_close` only flushes (async-std's `TcpStream`, which
/// the `AsyncStd` runtime wraps for this)
/// leaves the peer waiting for the end of our output until one side
/// gives up.
///
/// ```
/// fn takes<T: beep_tokio::runtime::Transport>(_: T) {}
/// takes(futures_util::io::Cursor::new(Vec::<u8>::new()));
/// ```
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A bound TCP socket that accepts connections.
///
/// ```
/// fn takes(_: &dyn beep_tokio::runtime::Acceptor) {}
/// ```
pub trait Acceptor: Send + Sync + 'static {
    /// Waits for the next connection, with the peer's address.
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Transport>, SocketAddr)>>;
    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// An async runtime, as far as the driver needs one.
///
/// Implement it to run beep-tokio on another executor (smol, glommio...),
/// or to wrap one; the driver spawns three tasks per connection (reader,
/// writer, handler dispatcher) and uses `sleep` only for timeouts.
///
/// ```
/// use std::net::SocketAddr;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use beep_tokio::runtime::{Acceptor, BoxFuture, Runtime, Transport};
///
/// /// Counts the tasks another runtime spawns for the driver.
/// #[derive(Debug)]
/// struct Counting<R> { inner: R, spawned: AtomicUsize }
///
/// impl<R: Runtime> Runtime for Counting<R> {
///     fn spawn(&self, task: BoxFuture<'static, ()>) {
///         self.spawned.fetch_add(1, Ordering::Relaxed);
///         self.inner.spawn(task)
///     }
///     fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
///         self.inner.sleep(duration)
///     }
///     fn resolve(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
///         self.inner.resolve(host)
///     }
///     fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, std::io::Result<Box<dyn Transport>>> {
///         self.inner.connect(addr)
///     }
///     fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, std::io::Result<Box<dyn Acceptor>>> {
///         self.inner.bind(addr)
///     }
/// }
/// ```
pub trait Runtime: fmt::Debug + Send + Sync + 'static {
    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Completes after `duration`. The driver asks for a year at most
    /// (longer waits are slept in parts, and a wait too long for an
    /// `Instant` is never slept at all).
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
    /// Resolves `host:port` to socket addresses.
    fn resolve(&self, host: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
    /// Opens a TCP connection (with Nagle's algorithm off: BEEP frames are
    /// small and latency-bound).
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Transport>>>;
    /// Binds a listening TCP socket.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>>;
    /// Runs `work`, application code that may block (an auth handler
    /// looking a user up, a TLS acceptor reading a certificate), where
    /// blocking stalls no other task, and completes when it has run. The
    /// default runs it at once, on the calling task's thread: runtimes
    /// with a blocking pool (tokio's and async-std's here) override it.
    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        work();
        Box::pin(std::future::ready(()))
    }
    /// Lets the runtime's other ready tasks run before the calling task
    /// goes on. The reader yields so after a full read that queued work
    /// for the dispatcher: it then handles what was read before more is
    /// read, as beep-blocking's workers do. The default wakes the task
    /// and returns pending once; tokio's and async-std's use their own
    /// (tokio's puts the task behind the others, where a plain wake-up
    /// may run it again first).
    ///
    /// ```
    /// # async fn demo(runtime: &dyn beep_tokio::runtime::Runtime) {
    /// runtime.yield_now().await; // other ready tasks have had their turn
    /// # }
    /// ```
    fn yield_now(&self) -> BoxFuture<'static, ()> {
        Box::pin(YieldOnce(false))
    }
}

/// Pending once, having woken its task (see [`Runtime::yield_now`]).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The runtime to use when [`Options::runtime`](crate::Options::runtime)
/// names none: tokio when called inside a tokio runtime, else async-std
/// when that feature is on.
pub(crate) fn detect() -> Result<Arc<dyn Runtime>, Error> {
    #[cfg(feature = "tokio")]
    if let Some(tokio) = Tokio::current() {
        return Ok(Arc::new(tokio));
    }
    #[cfg(feature = "async-std")]
    return Ok(Arc::new(AsyncStd));
    #[allow(unreachable_code)]
    Err(Error::NoRuntime)
}

/// When a wait of `timeout` starting now ends; `None` (no deadline: the
/// wait lasts until its event) when no `Instant` is that far, as for
/// `Duration::MAX`. `Instant::now() + timeout` would panic instead.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The longest sleep asked of a [`Runtime`]: longer ones are slept in
/// parts, so that no runtime's own timer arithmetic can overflow.
const LONGEST_SLEEP: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Completes after `duration`, or never when that is too long for a
/// deadline (see [`deadline`]). Every timer of the driver goes through
/// here rather than [`Runtime::sleep`].
pub(crate) async fn sleep(runtime: &dyn Runtime, duration: Duration) {
    if deadline(duration).is_none() {
        return std::future::pending().await;
    }
    let mut left = duration;
    while left > LONGEST_SLEEP {
        runtime.sleep(LONGEST_SLEEP).await;
        left -= LONGEST_SLEEP;
    }
    runtime.sleep(left).await;
}

/// Runs `future`, giving up after `duration` (never, when that is too long
/// for a deadline).
pub(crate) async fn timeout<T>(
    runtime: &dyn Runtime,
    duration: Duration,
    future: impl Future<Output = T>,
) -> Option<T> {
    let future = std::pin::pin!(future);
    let limit = std::pin::pin!(sleep(runtime, duration));
    match select(future, limit).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

/// Where to connect or listen: socket addresses, or a `host:port` to
/// resolve through the runtime (so name lookups never block a task).
///
/// ```
/// use beep_tokio::ToAddrs;
/// fn takes(_: impl ToAddrs) {}
/// takes("127.0.0.1:10288");
/// takes("localhost:10288".to_string());
/// takes(("::1", 10288));
/// takes(std::net::SocketAddr::from(([127, 0, 0, 1], 10288)));
/// ```
pub trait ToAddrs {
    /// The addresses, or the name to resolve.
    fn to_addrs(&self) -> Addrs;
}

/// What [`ToAddrs`] gives: addresses known already, or a name to look up.
///
/// ```
/// use beep_tokio::{Addrs, ToAddrs};
/// assert!(matches!("127.0.0.1:1".to_addrs(), Addrs::Resolved(_)));
/// assert!(matches!("localhost:1".to_addrs(), Addrs::Lookup(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addrs {
    /// Socket addresses, tried in order.
    Resolved(Vec<SocketAddr>),
    /// A `host:port` for the runtime's resolver.
    Lookup(String),
}

impl Addrs {
    pub(crate) async fn resolve(self, runtime: &dyn Runtime) -> io::Result<Vec<SocketAddr>> {
        let addrs = match self {
            Addrs::Resolved(addrs) => addrs,
            Addrs::Lookup(host) => runtime.resolve(host).await?,
        };
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ));
        }
        Ok(addrs)
    }
}

fn host_port(host: &str, port: u16) -> Addrs {
    match host.parse::<IpAddr>() {
        Ok(ip) => Addrs::Resolved(vec![SocketAddr::new(ip, port)]),
        Err(_) => Addrs::Lookup(format!("{host}:{port}")),
    }
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![*self])
    }
}

impl ToAddrs for str {
    fn to_addrs(&self) -> Addrs {
        match self.parse::<SocketAddr>() {
            Ok(addr) => Addrs::Resolved(vec![addr]),
            Err(_) => Addrs::Lookup(self.to_owned()),
        }
    }
}

impl ToAddrs for String {
    fn to_addrs(&self) -> Addrs {
        self.as_str().to_addrs()
    }
}

impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> Addrs {
        host_port(self.0, self.1)
    }
}

impl ToAddrs for (String, u16) {
    fn to_addrs(&self) -> Addrs {
        host_port(&self.0, self.1)
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToAddrs for (Ipv4Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToAddrs for (Ipv6Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToAddrs for [SocketAddr] {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.to_vec())
    }
}

impl ToAddrs for Vec<SocketAddr> {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.clone())
    }
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> Addrs {
        (**self).to_addrs()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt;

    use super::*;

    /// Wakes counted, for [`the_default_yield_wakes_its_task_and_is_pending_once`].
    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn the_default_yield_wakes_its_task_and_is_pending_once() {
        let wakes = std::sync::Arc::new(CountWakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut yielding = Recording::default().yield_now();
        assert!(yielding.as_mut().poll(&mut cx).is_pending());
        // Woken before it returned pending: the executor polls it again.
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(yielding.as_mut().poll(&mut cx).is_ready());
    }

    /// A runtime that only sleeps, at once, and records what it was asked.
    #[derive(Debug, Default)]
    struct Recording(Mutex<Vec<Duration>>);

    impl Runtime for Recording {
        fn spawn(&self, _: BoxFuture<'static, ()>) {
            unreachable!("no tasks here")
        }
        fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
            self.0.lock().unwrap().push(duration);
            Box::pin(async {})
        }
        fn resolve(&self, _: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
            unreachable!("no names here")
        }
        fn connect(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Transport>>> {
            unreachable!("no sockets here")
        }
        fn bind(&self, _: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
            unreachable!("no sockets here")
        }
    }

    #[test]
    fn a_timeout_past_what_an_instant_holds_is_no_deadline() {
        assert_eq!(deadline(Duration::MAX), None);
        assert!(deadline(Duration::from_secs(60)).is_some());
    }

    #[test]
    fn a_wait_without_deadline_never_asks_the_runtime_to_sleep() {
        let runtime = Recording::default();
        assert_eq!(sleep(&runtime, Duration::MAX).now_or_never(), None);
        let value = timeout(&runtime, Duration::MAX, async { 7 }).now_or_never();
        assert_eq!(value, Some(Some(7)));
        let never = timeout(&runtime, Duration::MAX, std::future::pending::<()>());
        assert_eq!(never.now_or_never(), None, "no deadline: it waits on");
        assert_eq!(*runtime.0.lock().unwrap(), []);
    }

    #[test]
    fn a_sleep_of_years_is_asked_of_the_runtime_a_year_at_a_time() {
        let runtime = Recording::default();
        let years = LONGEST_SLEEP * 2 + Duration::from_secs(1);
        assert_eq!(sleep(&runtime, years).now_or_never(), Some(()));
        let asked = runtime.0.lock().unwrap().clone();
        assert_eq!(
            asked,
            [LONGEST_SLEEP, LONGEST_SLEEP, Duration::from_secs(1)]
        );
        let expired = timeout(&runtime, Duration::ZERO, std::future::pending::<()>());
        assert_eq!(expired.now_or_never(), Some(None));
    }
}
