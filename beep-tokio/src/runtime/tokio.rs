//! The tokio runtime: tasks, timers and TCP through tokio; streams adapted
//! to `futures-io` by tokio-util's compat layer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::{Acceptor, BoxFuture, Runtime, Transport};

/// Runs the driver on a tokio runtime (the default inside one).
///
/// It keeps the runtime's [`Handle`], so connections made with it work
/// even when the calling future is polled by another executor. The runtime
/// needs its I/O and time drivers (`enable_all()`, as `#[tokio::main]`
/// does).
///
/// ```
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let tokio = beep_tokio::runtime::Tokio::current().expect("inside tokio");
///     let options = beep_tokio::Options::default().with_runtime(tokio);
/// #   drop(options);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Tokio {
    handle: Handle,
}

impl Tokio {
    /// The tokio runtime the caller runs in, if any.
    ///
    /// ```
    /// assert!(beep_tokio::runtime::Tokio::current().is_none());
    /// ```
    pub fn current() -> Option<Self> {
        Handle::try_current().ok().map(Self::from_handle)
    }

    /// A specific tokio runtime.
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let tokio = beep_tokio::runtime::Tokio::from_handle(rt.handle().clone());
    /// # drop(tokio);
    /// ```
    pub fn from_handle(handle: Handle) -> Self {
        Tokio { handle }
    }

    /// Runs `work` on the runtime, so that it registers with tokio's
    /// reactor whichever executor polls the returned future.
    fn on_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> BoxFuture<'static, io::Result<T>> {
        let task = self.handle.spawn(work);
        Box::pin(async move { task.await.map_err(io::Error::other)? })
    }
}

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(self.handle.spawn(task));
    }

    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        let done = self.handle.spawn_blocking(work);
        // A panic was caught inside `work` already; a join error can only
        // be the runtime shutting down, which ends the connection anyway.
        Box::pin(async move {
            let _ = done.await;
        })
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        Box::pin(tokio::task::yield_now())
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // A Sleep binds to the timer of the runtime it is created in.
        let _entered = self.handle.enter();
        Box::pin(tokio::time::sleep(duration))
    }

    fn resolve(&self, host: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.on_runtime(async move { Ok(tokio::net::lookup_host(host).await?.collect()) })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Transport>>> {
        self.on_runtime(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(TokioTcp(stream.compat())) as Box<dyn Transport>)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        self.on_runtime(async move {
            let listener = TcpListener::bind(addr).await?;
            Ok(Box::new(TokioAcceptor { listener }) as Box<dyn Acceptor>)
        })
    }
}

/// A listening socket; registered with the reactor when bound, so any
/// executor may poll its accepts.
struct TokioAcceptor {
    listener: TcpListener,
}

impl Acceptor for TokioAcceptor {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Transport>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((
                Box::new(TokioTcp(stream.compat())) as Box<dyn Transport>,
                peer,
            ))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A tokio TCP stream as a `futures-io` stream. tokio-util's `Compat`
/// writes only the first slice of a vectored write; this passes vectored
/// writes to tokio's `writev`, so frames and large payloads leave in one
/// system call without being copied together.
struct TokioTcp(Compat<TcpStream>);

impl futures_io::AsyncRead for TokioTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl futures_io::AsyncWrite for TokioTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(Pin::new(self.0.get_mut()), cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
