//! beep-blocking over streams other than its own TCP sockets
//! (`Connection::connect_transport`, `Connection::accept_transport`): Unix
//! socket pairs, beep-tokio at the other end of a Unix socket, and OS
//! pipes through `transport::Split`, which has neither read timeouts nor
//! writes that never block.

#![cfg(unix)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beep_blocking::transport::{Split, Transport};
use beep_blocking::{
    CloseReason, Connection, Error, Listener, Options, ProfileHandler, Registry, Reply,
};
use beep_proto::xml::Profile;
use beep_proto::{AnsNo, Message, ReplyCode};

const ECHO: &str = "http://example.org/beep/echo";
const COUNT: &str = "http://example.org/beep/count";
const SLOW: &str = "http://example.org/beep/slow";
const T: Duration = Duration::from_secs(10);
const MEGABYTE: usize = 1 << 20;

/// Echo, ANS/NUL (as many answers as the MSG's number, then NUL), and a
/// reply after a second.
fn registry() -> Registry {
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
        SLOW,
        ProfileHandler::new(|channel, m| {
            std::thread::sleep(Duration::from_secs(1));
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    registry
}

/// A client and a listener side over `a` and `b`.
fn pair(a: impl Transport, b: impl Transport) -> (Connection, Connection) {
    let server = Connection::accept_transport(b, registry(), Options::default()).unwrap();
    let client = Connection::connect_transport(a, Options::default()).unwrap();
    (client, server)
}

fn unix_pair() -> (Connection, Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    pair(a, b)
}

fn body(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Round trips, a megabyte each way, ANS/NUL, and a release: what every
/// transport must carry.
fn converse(client: &Connection, server: &Connection) {
    assert_eq!(client.peer_greeting().profiles, vec![ECHO, COUNT, SLOW]);
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    for i in 0..100 {
        let text = format!("hello {i}");
        let reply = echo.request(Message::new(text.clone()), T).unwrap();
        assert_eq!(body(reply), text.as_bytes());
    }
    // Many frames and windows' worth, to the listener and back.
    let big = pattern(MEGABYTE);
    let reply = echo.request(Message::new(big.clone()), T).unwrap();
    assert!(body(reply) == big, "the megabyte came back changed");
    let count = client.open_channel(Profile::new(COUNT), None).unwrap();
    match count.request(Message::new("5"), T).unwrap() {
        Reply::Answers(answers) => {
            let got: Vec<_> = answers
                .iter()
                .map(|(ansno, m)| (*ansno, m.body().to_vec()))
                .collect();
            let want: Vec<_> = (0..5)
                .map(|i| (AnsNo(i), i.to_string().into_bytes()))
                .collect();
            assert_eq!(got, want);
        }
        other => panic!("expected ANS/NUL, got {other:?}"),
    }
    client.close().unwrap();
    assert!(server.wait_closed(T).is_some());
    assert_eq!(server.close_reason(), Some(CloseReason::Released));
    assert_eq!(client.close_reason(), Some(CloseReason::Released));
}

#[test]
fn rfc3080_a_blocking_session_runs_over_a_unix_socket_pair() {
    let (client, server) = unix_pair();
    assert_eq!(client.peer_addr(), None);
    assert_eq!(server.peer_addr(), None);
    converse(&client, &server);
}

#[test]
fn a_request_over_a_unix_socket_times_out_on_time() {
    // The waiting thread reads the socket itself, with a read timeout.
    let (client, _server) = unix_pair();
    let slow = client.open_channel(Profile::new(SLOW), None).unwrap();
    let start = Instant::now();
    let reply = slow.request(Message::new("x"), Duration::from_millis(100));
    assert!(matches!(reply, Err(Error::Timeout)), "{reply:?}");
    assert!(start.elapsed() < Duration::from_millis(900));
}

#[test]
fn rfc3080_2_4_dropping_the_last_handle_of_an_accepted_transport_releases_it() {
    let (client, server) = unix_pair();
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(body(echo.request(Message::new("x"), T).unwrap()), b"x");
    drop(server);
    assert!(client.wait_closed(T).is_some());
    assert_eq!(client.close_reason(), Some(CloseReason::Released));
}

#[test]
fn connect_transport_over_tcp_knows_its_peer() {
    let listener = Listener::bind("127.0.0.1:0", registry(), Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = std::thread::spawn(move || listener.serve());
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let client = Connection::connect_transport(stream, Options::default()).unwrap();
    assert_eq!(client.peer_addr(), Some(addr));
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(body(echo.request(Message::new("tcp"), T).unwrap()), b"tcp");
    client.close().unwrap();
    stop.shutdown();
    serving.join().unwrap().unwrap();
}

/// beep-tokio at the other end of a Unix socket.
mod tokio_peer {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use beep_tokio::{ProfileHandler, Registry};
    use futures_util::io::{AsyncRead, AsyncWrite};
    use tokio::io::{AsyncRead as _, AsyncWrite as _, ReadBuf};

    use super::*;

    /// A tokio Unix socket as a futures-io stream (vectored writes kept).
    pub struct Compat(pub tokio::net::UnixStream);

    impl AsyncRead for Compat {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut read = ReadBuf::new(buf);
            ready!(Pin::new(&mut self.0).poll_read(cx, &mut read))?;
            Poll::Ready(Ok(read.filled().len()))
        }
    }

    impl AsyncWrite for Compat {
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
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// `std` half of a pair to tokio (inside `runtime`).
    pub fn tokio_stream(runtime: &tokio::runtime::Runtime, std: UnixStream) -> Compat {
        std.set_nonblocking(true).unwrap();
        let _entered = runtime.enter();
        Compat(tokio::net::UnixStream::from_std(std).unwrap())
    }

    /// The same profiles as the blocking [`super::registry`].
    pub fn registry() -> Registry {
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
        registry.register(SLOW, ProfileHandler::new(|_, _| async {}));
        registry
    }
}

#[test]
fn a_blocking_client_talks_to_a_tokio_listener_over_a_unix_socket() {
    let runtime = tokio_peer::runtime();
    let (a, b) = UnixStream::pair().unwrap();
    let b = tokio_peer::tokio_stream(&runtime, b);
    let server = runtime
        .block_on(async {
            beep_tokio::Connection::accept_transport(
                b,
                tokio_peer::registry(),
                beep_tokio::Options::default(),
            )
        })
        .unwrap();
    let client = Connection::connect_transport(a, Options::default()).unwrap();
    assert_eq!(client.peer_greeting().profiles, vec![ECHO, COUNT, SLOW]);
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    for i in 0..100 {
        let text = format!("hello {i}");
        assert_eq!(
            body(echo.request(Message::new(text.clone()), T).unwrap()),
            text.as_bytes()
        );
    }
    let big = pattern(MEGABYTE);
    let reply = echo.request(Message::new(big.clone()), T).unwrap();
    assert!(body(reply) == big, "the megabyte came back changed");
    let count = client.open_channel(Profile::new(COUNT), None).unwrap();
    match count.request(Message::new("4"), T).unwrap() {
        Reply::Answers(answers) => assert_eq!(answers.len(), 4),
        other => panic!("expected ANS/NUL, got {other:?}"),
    }
    client.close().unwrap();
    let reason = runtime.block_on(async {
        tokio::time::timeout(T, server.wait_closed())
            .await
            .expect("the tokio side ends")
    });
    assert_eq!(reason, beep_tokio::CloseReason::Released);
}

#[test]
fn a_tokio_client_talks_to_a_blocking_listener_over_a_unix_socket() {
    let runtime = tokio_peer::runtime();
    let (a, b) = UnixStream::pair().unwrap();
    let a = tokio_peer::tokio_stream(&runtime, a);
    let server = Connection::accept_transport(b, registry(), Options::default()).unwrap();
    runtime.block_on(async {
        let options = beep_tokio::Options::default();
        let client = beep_tokio::Connection::connect_transport(a, options)
            .await
            .unwrap();
        let echo = client.open_channel(Profile::new(ECHO), None).await.unwrap();
        let big = pattern(MEGABYTE);
        match echo.request(Message::new(big.clone()), T).await.unwrap() {
            beep_tokio::Reply::Rpy(m) => assert!(m.body().as_ref() == &big[..]),
            other => panic!("expected RPY, got {other:?}"),
        }
        client.close().await.unwrap();
    });
    assert!(server.wait_closed(T).is_some());
    assert_eq!(server.close_reason(), Some(CloseReason::Released));
}

/// A pipe end that says when the connection dropped it: the connection's
/// threads hold it to the end.
struct Tracked<R> {
    inner: R,
    dropped: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R> Drop for Tracked<R> {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// Two sessions over two OS pipes, through `Split`; the flags tell when
/// each side's reader (so its connection's every thread) is gone.
fn pipe_pair() -> (Connection, Connection, [Arc<AtomicBool>; 2]) {
    let (client_reads, server_writes) = std::io::pipe().unwrap();
    let (server_reads, client_writes) = std::io::pipe().unwrap();
    let gone = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let tracked = |inner, dropped: &Arc<AtomicBool>| Tracked {
        inner,
        dropped: dropped.clone(),
    };
    let (client, server) = pair(
        Split::new(tracked(client_reads, &gone[0]), client_writes),
        Split::new(tracked(server_reads, &gone[1]), server_writes),
    );
    (client, server, gone)
}

fn all_gone(flags: &[Arc<AtomicBool>]) -> bool {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if flags.iter().all(|f| f.load(Ordering::SeqCst)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn rfc3080_a_session_runs_over_pipes_without_read_timeouts() {
    let (client, server, gone) = pipe_pair();
    assert_eq!(client.peer_addr(), None);
    converse(&client, &server);
    drop((client, server));
    assert!(
        all_gone(&gone),
        "a released pipe session left threads behind"
    );
}

#[test]
fn a_request_over_pipes_is_read_for_its_thread_and_times_out_on_time() {
    // A waiting thread may not read a stream without read timeouts: a
    // worker reads for it, between requests too, and its deadline holds.
    let (client, _server, _) = pipe_pair();
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    for i in 0..20 {
        // Longer than a reservation of the reading role would last.
        std::thread::sleep(Duration::from_millis(10));
        let text = format!("after a pause {i}");
        assert_eq!(
            body(echo.request(Message::new(text.clone()), T).unwrap()),
            text.as_bytes()
        );
    }
    let slow = client.open_channel(Profile::new(SLOW), None).unwrap();
    let start = Instant::now();
    let reply = slow.request(Message::new("x"), Duration::from_millis(100));
    assert!(matches!(reply, Err(Error::Timeout)), "{reply:?}");
    assert!(start.elapsed() < Duration::from_millis(900));
    // The late reply does not disturb the next request.
    assert_eq!(body(echo.request(Message::new("y"), T).unwrap()), b"y");
}

#[test]
fn both_sides_writing_megabytes_into_full_pipes_do_not_deadlock() {
    // Pipes hold 64 KiB: four 1 MB requests in flight, echoed while they
    // are still being written, block both writers unless each side reads
    // while it waits to write.
    let (client, _server, _) = pipe_pair();
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    let echoed = Arc::new(AtomicUsize::new(0));
    let counter = echoed.clone();
    echo.set_message_handler(move |_, m| {
        assert_eq!(m.message.body().len(), MEGABYTE);
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let big = Message::new(pattern(MEGABYTE));
    for _ in 0..4 {
        echo.send_msg(big.clone()).unwrap();
    }
    let deadline = Instant::now() + T;
    while echoed.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "only {echoed:?} echoed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_shutdown_over_pipes_ends_both_sides_and_their_threads() {
    let (client, server, gone) = pipe_pair();
    let echo = client.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(body(echo.request(Message::new("x"), T).unwrap()), b"x");
    server.shutdown();
    assert!(client.wait_closed(T).is_some());
    assert!(
        matches!(client.close_reason(), Some(CloseReason::Lost(_))),
        "{:?}",
        client.close_reason()
    );
    assert!(matches!(
        echo.request(Message::new("x"), T),
        Err(Error::Closed(_))
    ));
    drop((echo, client, server));
    assert!(
        all_gone(&gone),
        "a shut down pipe session left threads behind"
    );
}

#[test]
fn a_listener_over_pipes_refuses_an_unknown_profile() {
    let (client, _server, _) = pipe_pair();
    match client.open_channel(Profile::new("http://example.org/beep/none"), None) {
        Err(Error::Refused { code, .. }) => {
            assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
        }
        other => panic!("{other:?}"),
    }
}
