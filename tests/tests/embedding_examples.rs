//! The reference embeddings of the core (issue 14), run as child processes
//! over loopback TCP: `beep-proto/examples/mio_listener.rs` serving the
//! drivers' clients, and `beep-proto/examples/async_client.rs` against the
//! drivers' listeners and against the mio listener. RFC 3080 2.4: every
//! session ends with a release that both sides see.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beep_proto::Message;
use beep_proto::xml::Profile;

const ECHO: &str = "http://example.org/beep/echo";
/// The bound of every wait: only there so that a bug fails instead of
/// hanging.
const T: Duration = Duration::from_secs(30);
/// The async client's own time limit, below the test's.
const CLIENT_TIMEOUT: &str = "25";

/// Builds the examples once (with this test's profile, into this test's
/// target directory, whatever `CARGO_TARGET_DIR` says) and returns the
/// directory that holds them.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test runs as <target>/<profile>/deps/embedding_examples-<hash>.
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("<target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("<target>");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "beep-proto",
                "--examples",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => drop(build.arg("--release")),
            Some(other) => drop(build.args(["--profile", other])),
            None => panic!("no profile directory in {}", exe.display()),
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the examples failed: {status}");
        profile_dir.join("examples")
    })
}

fn example(name: &str) -> Command {
    let path = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    Command::new(path)
}

/// A child's output stream as lines on a channel, which disconnects at
/// the stream's end.
fn line_by_line(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The mio listener example as a child process. Dropping it kills the
/// process if it is still running.
struct MioListener {
    child: Child,
    addr: SocketAddr,
    /// Its standard input: closing it stops the listener.
    stdin: Option<ChildStdin>,
    /// Its stdout lines after `listening on ADDR`; disconnected at exit.
    lines: mpsc::Receiver<String>,
    /// Its stderr lines (one per ended session, and one when echoes wait
    /// for room); disconnected at exit.
    stderr: Option<mpsc::Receiver<String>>,
}

impl MioListener {
    fn start(args: &[&str]) -> MioListener {
        let mut child = example("mio_listener")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mio_listener starts");
        let lines = line_by_line(child.stdout.take().expect("piped stdout"));
        let stderr = Some(line_by_line(child.stderr.take().expect("piped stderr")));
        let first = lines.recv_timeout(T).expect("the listener's first line");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {first:?}"));
        MioListener {
            stdin: child.stdin.take(),
            child,
            addr,
            lines,
            stderr,
        }
    }

    /// Closes its standard input: the stop signal.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (bounded) for the listener to exit by itself, checks that it
    /// succeeded, and returns its last stdout line and its stderr.
    fn wait_exit(&mut self) -> (String, String) {
        let deadline = Instant::now() + T;
        let mut last = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => last = line,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the listener did not exit within {T:?}");
                }
            }
        }
        let status = self.child.wait().expect("the listener's status");
        // It has exited: its stderr is at its end.
        let stderr: String = self.stderr.take().map_or(String::new(), |lines| {
            lines.iter().map(|line| line + "\n").collect()
        });
        assert!(status.success(), "listener failed: {status}\n{stderr}");
        (last, stderr)
    }
}

impl Drop for MioListener {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the async client example against `addr` (bounded by its own
/// `--timeout`, and by `T` here).
fn async_client(addr: SocketAddr, args: &[&str]) -> Output {
    let mut command = example("async_client");
    command
        .args(["--addr", &addr.to_string(), "--timeout", CLIENT_TIMEOUT])
        .args(args);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    rx.recv_timeout(T)
        .expect("the async client ends within its timeout")
        .expect("async_client runs")
}

/// Checks that the async client succeeded and echoed `messages` messages.
fn assert_echoed(output: &Output, messages: usize) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "async_client failed: {}\n{stdout}{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("{messages} echoed, 0 mismatched")),
        "{stdout}"
    );
}

/// The body of request `i` of a client: distinct for every request.
fn body(client: usize, i: usize, size: usize) -> Vec<u8> {
    let seed = format!("client {client} request {i} ");
    seed.bytes().cycle().take(size.max(seed.len())).collect()
}

fn rpy_body(reply: beep_blocking::Reply) -> Vec<u8> {
    match reply {
        beep_blocking::Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

/// A beep-blocking client: 100 echo round trips, one 200 KB message, a
/// refused profile, and a release.
fn blocking_client(addr: SocketAddr, client: usize) {
    use beep_blocking::{CloseReason, Connection, Options};
    let conn = Connection::connect(addr, Options::default()).unwrap();
    assert_eq!(conn.peer_greeting().profiles, vec![ECHO.to_string()]);
    let refused = conn.open_channel(Profile::new("http://example.org/beep/none"), None);
    assert!(refused.is_err(), "only the echo profile is served");
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    for i in 0..100 {
        let sent = body(client, i, 64);
        let reply = echo.request(Message::new(sent.clone()), T).unwrap();
        assert_eq!(rpy_body(reply), sent, "client {client} request {i}");
    }
    let big = body(client, 100, 200_000);
    let reply = echo.request(Message::new(big.clone()), T).unwrap();
    assert_eq!(rpy_body(reply), big);
    echo.close().unwrap();
    conn.close().unwrap();
    assert!(conn.wait_closed(T).is_some());
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
}

#[test]
fn mio_listener_serves_beep_blocking_clients_at_once_and_stops_after_max_connections() {
    let mut listener = MioListener::start(&["--max-connections", "4"]);
    let addr = listener.addr;
    let clients: Vec<_> = (0..4)
        .map(|client| std::thread::spawn(move || blocking_client(addr, client)))
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let (last, stderr) = listener.wait_exit();
    assert_eq!(last, "served 4 connections");
    assert_eq!(
        stderr.matches("released by agreement").count(),
        4,
        "{stderr}"
    );
}

#[test]
fn mio_listener_serves_a_beep_tokio_client() {
    use beep_tokio::{CloseReason, Connection, Options, Reply};
    let mut listener = MioListener::start(&["--max-connections", "1"]);
    let addr = listener.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let scenario = async {
            let conn = Connection::connect(addr, Options::default()).await.unwrap();
            let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
            // 100 requests in flight at once, then one of 200 KB.
            let sizes = (0..100).map(|_| 64).chain([200_000]);
            let bodies: Vec<Vec<u8>> = sizes.enumerate().map(|(i, n)| body(0, i, n)).collect();
            let requests = bodies
                .iter()
                .map(|b| echo.request(Message::new(b.clone()), T));
            let replies = futures_util::future::join_all(requests).await;
            for (sent, reply) in bodies.iter().zip(replies) {
                match reply.unwrap() {
                    Reply::Rpy(m) => assert_eq!(&m.body()[..], &sent[..]),
                    other => panic!("expected RPY, got {other:?}"),
                }
            }
            echo.close().await.unwrap();
            conn.close().await.unwrap();
            assert_eq!(conn.wait_closed().await, CloseReason::Released);
        };
        tokio::time::timeout(T, scenario)
            .await
            .expect("the tokio client finishes");
    });
    let (last, stderr) = listener.wait_exit();
    assert_eq!(last, "served 1 connections");
    assert!(stderr.contains("released by agreement"), "{stderr}");
}

#[test]
fn async_client_echoes_through_the_mio_listener_which_stops_when_stdin_closes() {
    let mut listener = MioListener::start(&[]);
    let addr = listener.addr;
    let small = std::thread::spawn(move || async_client(addr, &[]));
    let large = async_client(addr, &["--messages", "50", "--size", "200000"]);
    assert_echoed(&large, 50);
    assert_echoed(&small.join().unwrap(), 10);
    listener.close_stdin();
    let (last, _) = listener.wait_exit();
    assert_eq!(last, "served 2 connections");
}

#[test]
fn closing_the_mio_listeners_stdin_releases_its_live_sessions() {
    use beep_blocking::{CloseReason, Connection, Options};
    let mut listener = MioListener::start(&[]);
    let conn = Connection::connect(listener.addr, Options::default()).unwrap();
    assert!(conn.is_ok());
    listener.close_stdin();
    // The listener asks for the release; the client agrees.
    assert!(
        conn.wait_closed(T).is_some(),
        "the listener released the session"
    );
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
    let (last, stderr) = listener.wait_exit();
    assert_eq!(last, "served 1 connections");
    assert!(stderr.contains("released by agreement"), "{stderr}");
}

/// A beep-blocking listener whose echo profile answers with `transform`
/// applied to the body.
fn blocking_listener(
    transform: fn(&[u8]) -> Vec<u8>,
) -> (
    SocketAddr,
    beep_blocking::ShutdownHandle,
    JoinHandle<Result<(), beep_blocking::Error>>,
) {
    use beep_blocking::{Listener, Options, ProfileHandler, Registry};
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(move |channel, m| {
            let reply = Message::new(transform(m.message.body()));
            let _ = channel.reply_rpy(m.msgno, reply);
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    (addr, stop, std::thread::spawn(move || listener.serve()))
}

#[test]
fn async_client_echoes_through_a_beep_blocking_listener() {
    let (addr, stop, serving) = blocking_listener(|body| body.to_vec());
    let output = async_client(addr, &["--messages", "100", "--size", "20000"]);
    stop.shutdown();
    serving.join().unwrap().unwrap();
    assert_echoed(&output, 100);
}

#[test]
fn async_client_exits_non_zero_when_a_reply_does_not_echo() {
    let (addr, stop, serving) = blocking_listener(|body| body.iter().rev().copied().collect());
    let output = async_client(addr, &["--messages", "3", "--size", "10"]);
    stop.shutdown();
    serving.join().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("0 echoed, 3 mismatched"), "{stdout}");
}

#[test]
fn async_client_echoes_through_a_beep_tokio_listener() {
    use beep_tokio::{Listener, Options, ProfileHandler, Registry};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, stop, serving) = rt.block_on(async {
        let mut registry = Registry::new();
        registry.register(
            ECHO,
            ProfileHandler::new(|channel, m| async move {
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            }),
        );
        let listener = Listener::bind("127.0.0.1:0", registry, Options::default())
            .await
            .unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        (addr, stop, tokio::spawn(listener.serve()))
    });
    // The runtime's workers serve while this thread waits for the client.
    let output = async_client(addr, &["--messages", "100", "--size", "20000"]);
    stop.shutdown();
    rt.block_on(async {
        let served = tokio::time::timeout(T, serving)
            .await
            .expect("the listener stops");
        served.unwrap().unwrap();
    });
    assert_echoed(&output, 100);
}

/// What the hand-driven client below waits for.
enum Input {
    Bytes(Vec<u8>),
    Eof,
    Log(String),
}

#[test]
fn mio_listener_holds_echoes_back_while_its_client_gives_no_window() {
    use std::io::Write;
    use std::net::{Shutdown, TcpStream};

    use beep_proto::{Config, Event, MessageKind, ReplyCode, Session, SessionEnd, UsageError};

    // 8 MB of echoes: twice the listener's 4 MiB output limit.
    const COUNT: usize = 80;
    const SIZE: usize = 100_000;
    let mut listener = MioListener::start(&["--max-connections", "1"]);
    let (tx, rx) = mpsc::channel();
    let log = listener.stderr.take().expect("stderr lines");
    let log_tx = tx.clone();
    std::thread::spawn(move || {
        for line in log {
            if log_tx.send(Input::Log(line)).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(listener.addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Input::Eof);
                    break;
                }
                Ok(n) if tx.send(Input::Bytes(buf[..n].to_vec())).is_err() => break,
                Ok(_) => {}
            }
        }
    });

    // A client that gives window back only once the listener has said
    // that its echoes wait: until then, they pile up in the listener.
    let mut session = Session::initiator(Config {
        auto_credit: false,
        ..Config::default()
    });
    let mut channel = None;
    let (mut sent, mut replies, mut blocked) = (0, 0, false);
    let (mut full, mut held) = (false, Vec::new());
    let deadline = Instant::now() + T;
    loop {
        let mut moved = false;
        while let Some(event) = session.poll_event() {
            moved = true;
            match event {
                Event::Greeting(_) => {
                    session
                        .open_channel(vec![Profile::new(ECHO)], None)
                        .unwrap();
                }
                Event::ChannelOpened { channel: c, .. } => channel = Some(c),
                Event::Writable => blocked = false,
                Event::Message(m) => {
                    assert_eq!(m.kind, MessageKind::Rpy);
                    let expected = body(0, replies, SIZE);
                    assert!(m.message.body()[..] == expected[..], "reply {replies}");
                    replies += 1;
                    if full {
                        session.consumed(m.channel, m.credit);
                    } else {
                        held.push((m.channel, m.credit));
                    }
                    if replies == COUNT {
                        session
                            .close_channel(m.channel, ReplyCode::SUCCESS, "done")
                            .unwrap();
                    }
                }
                Event::ChannelClosed { .. } => {
                    session.close_session(ReplyCode::SUCCESS, "bye").unwrap();
                }
                Event::SessionEnded(end) => assert_eq!(end, SessionEnd::Released),
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(channel) = channel.filter(|_| sent < COUNT && !blocked) {
            moved = true;
            match session.send_msg(channel, Message::new(body(0, sent, SIZE))) {
                Ok(_) => sent += 1,
                Err(UsageError::OutputFull { .. }) => blocked = true,
                Err(e) => panic!("{e}"),
            }
        }
        while let Some(bytes) = session.poll_transmit() {
            moved = true;
            stream.write_all(&bytes).unwrap();
        }
        if moved {
            continue;
        }
        if session.is_ended() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Input::Bytes(bytes)) => session.handle_input(&bytes).unwrap(),
            Ok(Input::Eof) => session.handle_eof(),
            Ok(Input::Log(line)) if line.contains("echoes wait") => {
                full = true;
                for (channel, credit) in held.drain(..) {
                    session.consumed(channel, credit);
                }
            }
            Ok(Input::Log(_)) => {}
            Err(e) => panic!("{e}: sent {sent}, {replies} replies, full: {full}"),
        }
    }
    assert!(full, "the listener's output filled up");
    assert_eq!((sent, replies), (COUNT, COUNT));
    // Closing: our FIN, then the listener's.
    stream.shutdown(Shutdown::Write).unwrap();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Input::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("the listener did not close: {e}"),
        }
    }
    let (last, _) = listener.wait_exit();
    assert_eq!(last, "served 1 connections");
}
