//! The async-std runtime. async-std is discontinued upstream
//! (RUSTSEC-2025-0052); this stays small so that dropping it, or adding
//! smol the same way, touches nothing else.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream, ToSocketAddrs};

use super::{Acceptor, BoxFuture, Runtime, Transport};

/// Runs the driver on async-std's global executor. Its streams implement
/// `futures-io` already.
///
/// ```
/// let options = beep_tokio::Options::default().with_runtime(beep_tokio::runtime::AsyncStd);
/// # drop(options);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Dropping the handle detaches the task.
        drop(async_std::task::spawn(task));
    }

    fn run_blocking(&self, work: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::spawn_blocking(work))
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::yield_now())
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(duration))
    }

    fn resolve(&self, host: String) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(host.as_str().to_socket_addrs().await?.collect()) })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Transport>>> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(AsyncStdTcp(stream)) as Box<dyn Transport>)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        Box::pin(async move {
            let listener = TcpListener::bind(addr).await?;
            Ok(Box::new(AsyncStdAcceptor { listener }) as Box<dyn Acceptor>)
        })
    }
}

struct AsyncStdAcceptor {
    listener: TcpListener,
}

impl Acceptor for AsyncStdAcceptor {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Transport>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(AsyncStdTcp(stream)) as Box<dyn Transport>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An async-std TCP stream whose `poll_close` ends the sending half, as a
/// tokio stream's does (async-std's own only flushes): after a release
/// the peer sees the end of our output while we still read what it sends
/// (see `io::drain_after_release`).
struct AsyncStdTcp(TcpStream);

impl futures_io::AsyncRead for AsyncStdTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl futures_io::AsyncWrite for AsyncStdTcp {
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
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(self.0.shutdown(Shutdown::Write))
    }
}
