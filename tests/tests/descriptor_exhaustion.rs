//! A listener that runs out of file descriptors serves again once its
//! clients have gone, frees an ended connection's descriptor at once (not
//! at the next accept), and stops on request while it has none left.
//!
//! The open-files limit is per process, so each listener runs in a child
//! process (this test binary started again, running only `listener_child`)
//! with a low limit, and the clients run here.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use beep_proto::Message;
use beep_proto::xml::Profile;

const ECHO: &str = "http://example.org/beep/echo";
/// Tells the child test which listener to run.
const CHILD_ENV: &str = "BEEP_DESCRIPTOR_CHILD";
/// The child's open-files limit: room for about fifty connections.
const CHILD_LIMIT: u64 = 64;

#[test]
fn blocking_listener_survives_running_out_of_descriptors() {
    descriptor_exhaustion("blocking");
}

#[test]
fn tokio_listener_survives_running_out_of_descriptors() {
    descriptor_exhaustion("tokio");
}

/// The attack and the recovery, against one driver's listener.
fn descriptor_exhaustion(driver: &str) {
    let mut child = ListenerChild::start(driver);
    let idle = child.open_descriptors();

    // Fill the listener: connections are greeted until it has no
    // descriptor left; the next one waits in the backlog unanswered.
    let clients = fill(child.addr);
    assert!(
        clients.greeted >= 10,
        "{driver}: only {} connections were greeted before the limit",
        clients.greeted
    );

    // Every client leaves. The listener must give back their descriptors
    // without anyone new connecting (the accept that used to clear them
    // could never succeed again).
    drop(clients);
    let freed = wait_for(Duration::from_secs(10), || {
        child.open_descriptors() <= idle + 2
    });
    assert!(
        freed,
        "{driver}: the listener still holds {} descriptors ({idle} when idle) after every client left",
        child.open_descriptors()
    );

    // And it serves a real exchange again.
    let served = wait_for(Duration::from_secs(10), || echo_once(child.addr).is_ok());
    assert!(
        served,
        "{driver}: no exchange after the clients left: {:?}",
        echo_once(child.addr)
    );

    // Full again, a shutdown (SIGTERM in `beep serve`) still stops it.
    let clients = fill(child.addr);
    assert!(clients.greeted >= 10);
    let stopped = child.stop_within(Duration::from_secs(15));
    drop(clients);
    assert!(
        stopped,
        "{driver}: the listener did not stop while out of descriptors"
    );
}

/// Connections held open by the attacker.
struct Clients {
    streams: Vec<TcpStream>,
    greeted: usize,
}

/// Opens connections until one is not greeted within a second (the
/// listener is out of descriptors), at most 200.
fn fill(addr: SocketAddr) -> Clients {
    let mut clients = Clients {
        streams: Vec::new(),
        greeted: 0,
    };
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut first = [0u8; 3];
        let greeted = stream.read_exact(&mut first).is_ok() && &first == b"RPY";
        clients.streams.push(stream);
        if !greeted {
            return clients;
        }
        clients.greeted += 1;
    }
    panic!("200 connections were greeted: the child's descriptor limit did not hold");
}

/// One echo request over a fresh connection.
fn echo_once(addr: SocketAddr) -> Result<(), String> {
    let options = beep_blocking::Options {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let conn = beep_blocking::Connection::connect(addr, options).map_err(|e| e.to_string())?;
    let channel = conn
        .open_channel(Profile::new(ECHO), None)
        .map_err(|e| e.to_string())?;
    let reply = channel
        .request(Message::new("still serving"), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    match reply {
        beep_blocking::Reply::Rpy(m) if m.body().as_ref() == b"still serving" => {}
        other => return Err(format!("unexpected reply {other:?}")),
    }
    conn.close().map_err(|e| e.to_string())
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The listener's process.
struct ListenerChild {
    process: Child,
    /// Closing it asks the listener to shut down.
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl ListenerChild {
    fn start(driver: &str) -> Self {
        let mut process = Command::new(std::env::current_exe().expect("test binary"))
            .args(["listener_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the listener's process");
        let stdout = process.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the listener's process ended before it listened")
                .expect("read");
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                break addr.parse().expect("address");
            }
        };
        // Keep draining its output so it never blocks writing.
        std::thread::spawn(move || for _ in lines {});
        ListenerChild {
            stdin: process.stdin.take(),
            process,
            addr,
        }
    }

    fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.process.id()))
            .map(|d| d.count())
            .unwrap_or(usize::MAX)
    }

    fn stop_within(&mut self, limit: Duration) -> bool {
        drop(self.stdin.take());
        let stopped = wait_for(limit, || matches!(self.process.try_wait(), Ok(Some(_))));
        if stopped {
            let status = self.process.wait().expect("status");
            assert!(status.success(), "the listener's process failed: {status}");
        }
        stopped
    }
}

impl Drop for ListenerChild {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The listener's side: runs only in the child process (see the module
/// docs), which prints its address, serves until its stdin closes, then
/// shuts the listener down.
#[test]
#[ignore = "runs in the child process of the descriptor-exhaustion tests"]
fn listener_child() {
    let Ok(driver) = std::env::var(CHILD_ENV) else {
        return;
    };
    lower_open_files_limit(CHILD_LIMIT);
    match driver.as_str() {
        "blocking" => blocking_child(),
        "tokio" => tokio_child(),
        other => panic!("unknown driver {other}"),
    }
}

fn lower_open_files_limit(limit: u64) {
    let wanted = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass; nothing else is shared.
    let done = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) };
    assert_eq!(done, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}").expect("stdout");
    out.flush().expect("stdout");
}

/// Waits for stdin to close (the parent's stop), then runs `stop`.
fn stop_on_stdin_eof(stop: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        stop();
    });
}

/// Short waits for the release at shutdown: the attacker never answers it.
const RELEASE_WAIT: Duration = Duration::from_millis(500);

fn blocking_child() {
    use beep_blocking::{Listener, Options, ProfileHandler, Registry};
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    let options = Options {
        connect_timeout: RELEASE_WAIT,
        ..Default::default()
    };
    let listener = Listener::bind("127.0.0.1:0", registry, options).expect("bind");
    let stop = listener.shutdown_handle();
    announce(listener.local_addrs()[0]);
    stop_on_stdin_eof(move || stop.shutdown());
    listener.serve().expect("serve");
}

fn tokio_child() {
    use beep_tokio::{Listener, Options, ProfileHandler, Registry};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut registry = Registry::new();
        registry.register(
            ECHO,
            ProfileHandler::new(|channel, m| async move {
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            }),
        );
        let options = Options {
            connect_timeout: RELEASE_WAIT,
            ..Default::default()
        };
        let listener = Listener::bind("127.0.0.1:0", registry, options)
            .await
            .expect("bind");
        let stop = listener.shutdown_handle();
        announce(listener.local_addrs()[0]);
        stop_on_stdin_eof(move || stop.shutdown());
        listener.serve().await.expect("serve");
    });
}
