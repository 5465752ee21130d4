//! The byte streams a connection runs over: TCP and Unix sockets as they
//! are, and any other blocking stream as a reader and a writer half.
//!
//! A connection reads its stream from one thread while others write to
//! it, and ends by waking both (see [`Transport`]). Sockets allow all of
//! that through a shared reference, and offer two things more that the
//! driver uses when present: read deadlines (a thread waiting for a reply
//! reads its reply itself, sparing a thread switch) and writes that never
//! block (a writer announces that it waits on the peer only when the
//! socket is full). Any other stream comes as two halves, [`Split`],
//! which the driver serves with its worker threads alone.
//!
//! As in beep-tokio, [`Connection::connect_transport`] and
//! [`Connection::accept_transport`] take the stream as one value. An
//! async stream is one value that can be read and written at once; a
//! blocking `Read + Write` value cannot (a read blocks, holding the
//! `&mut` that every write needs), hence the two halves.
//!
//! [`Connection::connect_transport`]: crate::Connection::connect_transport
//! [`Connection::accept_transport`]: crate::Connection::accept_transport
//!
//! ```
//! use beep_blocking::transport::{Split, Transport};
//! fn takes(_: impl Transport) {}
//! # fn run(tcp: std::net::TcpStream) {
//! takes(tcp);
//! # }
//! // Any reader and writer, e.g. a child process's stdout and stdin.
//! takes(Split::new(std::io::empty(), std::io::sink()));
//! ```

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// A byte stream a BEEP session can run over: a [`TcpStream`], a Unix
/// [`UnixStream`](std::os::unix::net::UnixStream), a [`Split`] reader and
/// writer, or a type of yours.
///
/// Every method takes `&self`: the driver calls [`Transport::read`] from
/// one thread at a time, and meanwhile [`Transport::write_vectored`] (or
/// [`Transport::try_write_vectored`]) from one other thread at a time,
/// and [`Transport::shutdown`] from any thread at any time. Sockets allow
/// this as they are; a stream that is read and written through one
/// `&mut` cannot (its read, blocked until the peer writes, would keep
/// every write out, though the peer may be waiting for one): give its
/// two halves to [`Split`].
///
/// ```
/// use std::io::{self, IoSlice, Read, Write};
/// use std::net::TcpStream;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use beep_blocking::transport::Transport;
///
/// /// A TCP stream whose outgoing octets are counted.
/// struct Counted { tcp: TcpStream, sent: AtomicU64 }
///
/// impl Transport for Counted {
///     fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
///         Read::read(&mut &self.tcp, buf)
///     }
///     fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
///         let n = Write::write_vectored(&mut &self.tcp, bufs)?;
///         self.sent.fetch_add(n as u64, Ordering::Relaxed);
///         Ok(n)
///     }
///     // No `try_write_vectored`: every write announces that it may block.
///     fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
///         self.tcp.set_read_timeout(timeout)
///     }
///     fn shutdown(&self) {
///         let _ = self.tcp.shutdown(std::net::Shutdown::Both);
///     }
///     fn peer_addr(&self) -> Option<std::net::SocketAddr> {
///         self.tcp.peer_addr().ok()
///     }
/// }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// Reads into `buf` like [`Read::read`]: 0 is the end of the stream;
    /// after a read timeout, an error of kind `WouldBlock` or `TimedOut`.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes like [`Write::write_vectored`], blocking until some of
    /// `bufs` is written. Nothing is flushed later: a buffering writer
    /// flushes here.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Writes what the stream takes without blocking (`WouldBlock` when
    /// it takes nothing); `None` when the stream cannot. Without it, every
    /// write first wakes a worker to read meanwhile, in case the write
    /// blocks (two peers writing to each other must not both block with
    /// nobody reading): a thread switch per write.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        let _ = bufs;
        None
    }

    /// Makes reads give up after `timeout` (never with `None`). An error
    /// for `None` when the connection starts means the stream has no read
    /// timeouts: then only the connection's workers read it, and a thread
    /// waiting for a reply waits for a worker to hand it over (a thread
    /// switch per reply) instead of reading it itself.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Ends the stream both ways, once the session ended: the peer sees
    /// the end, and reads and writes blocked in other threads return (so
    /// the connection's threads end). It may be called more than once.
    fn shutdown(&self);

    /// Ends our sending half only, after a release: the peer reads the
    /// end of the stream while we still read (and drop) what it sends, so
    /// closing does not find unread input and reset the connection, which
    /// could discard the last replies the peer has not read yet. The
    /// default ends both halves.
    fn shutdown_write(&self) {
        self.shutdown();
    }

    /// The peer's address, for an IP connection.
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// Sockets: read, written and shut down through a shared reference, with
/// read timeouts and sends that never block (`MSG_DONTWAIT`, on Unix).
macro_rules! socket_transport {
    ($socket:ty, $peer_addr:expr) => {
        impl Transport for $socket {
            fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <&$socket as Read>::read(&mut &*self, buf)
            }

            fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <&$socket as Write>::write_vectored(&mut &*self, bufs)
            }

            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
                send_now(self, bufs)
            }

            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$socket>::set_read_timeout(self, timeout)
            }

            fn shutdown(&self) {
                let _ = <$socket>::shutdown(self, Shutdown::Both);
            }

            fn shutdown_write(&self) {
                let _ = <$socket>::shutdown(self, Shutdown::Write);
            }

            fn peer_addr(&self) -> Option<SocketAddr> {
                let peer_addr: fn(&$socket) -> Option<SocketAddr> = $peer_addr;
                peer_addr(self)
            }
        }
    };
}

socket_transport!(TcpStream, |s| TcpStream::peer_addr(s).ok());
#[cfg(unix)]
socket_transport!(std::os::unix::net::UnixStream, |_| None);

/// Writes what the socket takes without waiting.
#[cfg(unix)]
fn send_now(socket: &impl std::os::fd::AsFd, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
    // sendmsg refuses more than IOV_MAX (1024 on Linux) slices at once.
    let bufs = &bufs[..bufs.len().min(1024)];
    let sent = socket2::SockRef::from(socket).send_vectored_with_flags(bufs, libc::MSG_DONTWAIT);
    Some(sent)
}

/// Without a non-blocking send, every write announces its wait.
#[cfg(not(unix))]
fn send_now<S>(_: &S, _: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
    None
}

/// Any blocking stream, as a reader and a writer half: a stream and its
/// `try_clone`, a pipe's two ends, a child process's stdout and stdin.
///
/// Why two halves: the connection reads in one thread while it writes
/// in another, so a stream that is read and written through one `&mut`
/// would need a lock that a blocked read holds against every write. Read
/// and write to the same stream through [`Transport`] itself when its
/// references allow it (as sockets do), or when it has a better way to
/// end than the one below.
///
/// What a split stream lacks, and what it costs:
///
/// * no read timeouts: only the connection's workers read, so each reply
///   reaches a waiting thread through a thread switch;
/// * no writes that never block: each write first wakes a worker to
///   read meanwhile;
/// * [`Transport::shutdown`] drops the writer (the peer sees the end of
///   the stream), at once unless a write is under way, else when it
///   returns; a read blocked at that moment returns only when the peer
///   writes or ends its side, and every read after it reports the end.
///   A peer that keeps its side open after ours ended keeps one worker
///   thread, and the stream, until it does.
///
/// Writes go to the writer with [`Write::write_vectored`] and are flushed
/// after each call. A writer without vectored writes (the default
/// `write_vectored` writes the first slice only) does better in a
/// [`BufWriter`](std::io::BufWriter): a frame is three slices.
///
/// ```no_run
/// use std::process::{Command, Stdio};
/// use beep_blocking::{Connection, Options, transport::Split};
///
/// // A BEEP listener reached through ssh's stdin and stdout.
/// let mut child = Command::new("ssh")
///     .args(["example.org", "beep-serve --stdio"])
///     .stdin(Stdio::piped())
///     .stdout(Stdio::piped())
///     .spawn()?;
/// let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
/// let conn = Connection::connect_transport(Split::new(stdout, stdin), Options::default())?;
/// # Ok::<(), beep_blocking::Error>(())
/// ```
pub struct Split<R, W> {
    reader: Mutex<R>,
    writer: Mutex<Option<W>>,
    shut: AtomicBool,
}

impl<R, W> Split<R, W>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    /// A transport reading from `reader` and writing to `writer`.
    ///
    /// ```
    /// let (reader, writer) = std::io::pipe()?;
    /// let looped = beep_blocking::transport::Split::new(reader, writer);
    /// # drop(looped);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(reader: R, writer: W) -> Self {
        Split {
            reader: Mutex::new(reader),
            writer: Mutex::new(Some(writer)),
            shut: AtomicBool::new(false),
        }
    }
}

impl<R, W> std::fmt::Debug for Split<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("shut", &self.shut.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A lock whose holder panicked still guards a usable stream.
fn relock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl<R, W> Transport for Split<R, W>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shut.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let n = relock(&self.reader).read(buf)?;
        // What arrives after the end is not the session's.
        Ok(if self.shut.load(Ordering::SeqCst) {
            0
        } else {
            n
        })
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut writer = relock(&self.writer);
        let Some(writer) = writer.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let n = writer.write_vectored(bufs)?;
        writer.flush()?;
        Ok(n)
    }

    fn shutdown(&self) {
        self.shut.store(true, Ordering::SeqCst);
        // A write under way keeps the writer; the driver calls again once
        // its writes are done.
        let dropped = match self.writer.try_lock() {
            Ok(mut writer) => writer.take(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(TryLockError::WouldBlock) => None,
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_stream_ends_its_writer_on_shutdown_and_reads_nothing_after() {
        let (reader, writer) = std::io::pipe().unwrap();
        let split = Split::new(std::io::Cursor::new(b"late".to_vec()), writer);
        assert_eq!(split.write_vectored(&[IoSlice::new(b"hi")]).unwrap(), 2);
        split.shutdown();
        let mut got = Vec::new();
        // The writer is gone: the other end reads to the end at once.
        (&reader).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hi");
        assert_eq!(split.read(&mut [0; 8]).unwrap(), 0);
        let after = split.write_vectored(&[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(after.kind(), io::ErrorKind::NotConnected);
    }

    #[test]
    fn a_split_stream_has_no_read_timeouts_nor_non_blocking_writes() {
        let split = Split::new(std::io::empty(), std::io::sink());
        assert!(split.set_read_timeout(None).is_err());
        assert!(split.try_write_vectored(&[IoSlice::new(b"x")]).is_none());
        assert_eq!(split.peer_addr(), None);
    }

    #[cfg(unix)]
    #[test]
    fn unix_sockets_have_read_timeouts_and_non_blocking_writes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let timed_out = Transport::read(&a, &mut [0; 8]).unwrap_err();
        assert_eq!(timed_out.kind(), io::ErrorKind::WouldBlock);
        let sent = b.try_write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"c")]);
        assert_eq!(sent.unwrap().unwrap(), 3);
        assert_eq!(Transport::read(&a, &mut [0; 8]).unwrap(), 3);
        assert_eq!(Transport::peer_addr(&a), None);
        Transport::shutdown(&b);
        assert_eq!(Transport::read(&a, &mut [0; 8]).unwrap(), 0);
    }
}
