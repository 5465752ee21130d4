//! Issue 10 ("bound the drivers' action queues") and README.md's Limits:
//! "The drivers' action queues hold what the core routed: messages within
//! the windows (`receive_budget`), starts within `max_pending_starts`, and
//! the replies and callbacks of our own requests."
//!
//! A listener of each driver serves two profiles: [`ECHO`], which answers
//! at once, and [`HELD`], whose message handler (and, in the start case,
//! whose start hook) waits on a [`Gate`] the test opens at the end. While
//! the first held handler waits, nothing else of that connection is
//! handled, so everything the peer gets accepted meanwhile sits in the
//! driver's action queue. A raw TCP peer speaking BEEP by hand ([`Peer`])
//! then tries to make that queue grow:
//!
//! 1. MSGs on eight channels as fast as the windows the listener
//!    advertises allow (RFC 3081 3.1.2), until no SEQ moved a window for
//!    [`QUIET`]: what it got out is bounded by the windows;
//!    1b. empty MSGs, which cost no window: `max_pipelined_total` bounds
//!    them, and one more ends the session;
//! 2. MSGs beyond the window: the session ends (a typed
//!    `ProtocolError::WindowExceeded`, the socket closed) instead;
//! 3. `<start>` requests on channel 0 with the start hook held: at most
//!    `max_pending_starts` are queued, the rest are refused with 421.
//!
//! Meanwhile an honest client on another connection completes a request
//! on [`ECHO`], and the process's resident memory (the listener runs in
//! it) grows by less than [`RSS_BOUND_KIB`]. The tests of this file run
//! one at a time (see [`serial`]) so that the memory measured is theirs.
//!
//! The drivers differ in one way that shows here: the tokio listener's
//! reader goes on reading while a handler waits, so its queue fills up
//! to the limits; the blocking listener leaves the socket unread while a
//! handler waits on something other than this crate (documented on
//! `beep_blocking::ProfileHandler::new`), so what the peer sends waits in
//! the kernel, and a violation is seen once the handler returns.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use beep_proto::dispatch::{EndReason, Reply};
use beep_proto::xml::Profile;
use beep_proto::{Config, Message, ProtocolError};

mod raw_peer;

use raw_peer::{BOUND, Data, Frame, Kind, Peer, error_code, start_payload};

/// The profile whose handlers answer at once (the honest client's).
const ECHO: &str = "http://example.org/beep/echo";
/// The profile whose handlers wait on the test's [`Gate`].
const HELD: &str = "http://example.org/beep/held";

/// A window that has not moved for this long is closed.
const QUIET: Duration = Duration::from_millis(500);
/// The honest client's exchange must complete within this.
const HONEST_WITHIN: Duration = Duration::from_secs(5);
/// Channels the window flood uses.
const CHANNELS: u32 = 8;
/// The flood's MSG payload: the smallest MIME entity (RFC 3080 2.2.1:
/// no headers, an empty body), so a frame is about 24 octets and the
/// windows are spent on as many messages as they can hold.
const PAYLOAD: &[u8] = b"\r\n";
/// What the listener's memory may grow by during an attack.
const RSS_BOUND_KIB: u64 = 64 << 10;

/// The tests of this file measure this process's memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resident memory of this process (listener and peers), in KiB,
/// once freed heap memory has gone back to the system (glibc keeps it
/// otherwise, and what an earlier test freed would be reused unseen).
fn rss_kib() -> u64 {
    // SAFETY: malloc_trim only releases free pages of the heap.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Blocking,
    Tokio,
}

// ---------------------------------------------------------------------
// The listener: two profiles, one of them held.

/// Holds the [`HELD`] handlers until [`Gate::open`], and counts them.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    /// Message handlers entered (each is one action the queue held).
    messages: AtomicUsize,
    /// Start hooks entered.
    starts: AtomicUsize,
}

impl Gate {
    fn is_open(&self) -> bool {
        *self.open.lock().unwrap()
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// Blocks the calling thread until the gate opens (at most [`BOUND`]).
    fn wait(&self) {
        let guard = self.open.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(guard, BOUND, |open| !*open)
            .unwrap();
    }

    /// Waits (asynchronously, without holding a runtime thread) until
    /// the gate opens (at most [`BOUND`]).
    async fn wait_async(&self) {
        let until = Instant::now() + BOUND;
        while !self.is_open() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until `counter` reaches `n`; false after `limit`.
    fn reached(counter: &AtomicUsize, n: usize, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while counter.load(Ordering::SeqCst) < n {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// What `on_connection_end` reported.
#[derive(Default)]
struct Ends {
    seen: Mutex<Vec<(SocketAddr, EndReason)>>,
    changed: Condvar,
}

impl Ends {
    fn record(&self, peer: SocketAddr, reason: &EndReason) {
        self.seen.lock().unwrap().push((peer, reason.clone()));
        self.changed.notify_all();
    }

    /// The reason reported for `peer`, or None after `limit`.
    fn wait_for(&self, peer: SocketAddr, limit: Duration) -> Option<EndReason> {
        let find = |seen: &[(SocketAddr, EndReason)]| {
            seen.iter()
                .find(|(p, _)| *p == peer)
                .map(|(_, r)| r.clone())
        };
        let guard = self.seen.lock().unwrap();
        let (seen, _) = self
            .changed
            .wait_timeout_while(guard, limit, |seen| find(seen).is_none())
            .unwrap();
        find(&seen)
    }
}

enum Running {
    Blocking {
        stop: beep_blocking::ShutdownHandle,
        thread: std::thread::JoinHandle<Result<(), beep_blocking::Error>>,
    },
    Tokio {
        runtime: tokio::runtime::Runtime,
        stop: beep_tokio::ShutdownHandle,
        task: tokio::task::JoinHandle<Result<(), beep_tokio::Error>>,
    },
}

/// A listener of one driver on 127.0.0.1, its gate and its end reports.
struct Server {
    driver: Driver,
    addr: SocketAddr,
    gate: Arc<Gate>,
    ends: Arc<Ends>,
    running: Running,
}

/// The listener's session configuration: the defaults, whose limits are
/// what the README promises.
fn config() -> Config {
    Config::default()
}

/// Starts a listener of `driver` serving [`ECHO`] and [`HELD`]; with
/// `hold_starts`, [`HELD`]'s start hook waits on the gate too.
fn serve(driver: Driver, hold_starts: bool) -> Server {
    let gate = Arc::new(Gate::default());
    let ends = Arc::new(Ends::default());
    // Stopping the listener never waits long for a session's release.
    let release_timeout = Duration::from_secs(2);
    let (addr, running) = match driver {
        Driver::Blocking => {
            use beep_blocking::{ProfileHandler, Registry, StartDecision};
            let mut registry = Registry::new();
            registry.register(
                ECHO,
                ProfileHandler::new(|channel, m| {
                    let _ = channel.reply_rpy(m.msgno, m.message);
                }),
            );
            let held = gate.clone();
            let mut handler = ProfileHandler::new(move |channel, m| {
                held.messages.fetch_add(1, Ordering::SeqCst);
                held.wait();
                let _ = channel.reply_rpy(m.msgno, Message::default());
            });
            if hold_starts {
                let held = gate.clone();
                handler = handler.on_start(move |_request, _offer| {
                    held.starts.fetch_add(1, Ordering::SeqCst);
                    held.wait();
                    StartDecision::Accept(None)
                });
            }
            registry.register(HELD, handler);
            let options = beep_blocking::Options {
                config: config(),
                release_timeout,
                ..Default::default()
            };
            let mut listener =
                beep_blocking::Listener::bind("127.0.0.1:0", registry, options).expect("bind");
            let reports = ends.clone();
            listener.on_connection_end(move |p, r| reports.record(p, r));
            let addr = listener.local_addrs()[0];
            let stop = listener.shutdown_handle();
            let thread = std::thread::spawn(move || listener.serve());
            (addr, Running::Blocking { stop, thread })
        }
        Driver::Tokio => {
            use beep_tokio::{ProfileHandler, Registry, StartDecision};
            let mut registry = Registry::new();
            registry.register(
                ECHO,
                ProfileHandler::new(|channel, m| async move {
                    let _ = channel.reply_rpy(m.msgno, m.message).await;
                }),
            );
            let held = gate.clone();
            let mut handler = ProfileHandler::new(move |channel, m| {
                let held = held.clone();
                async move {
                    held.messages.fetch_add(1, Ordering::SeqCst);
                    held.wait_async().await;
                    let _ = channel.reply_rpy(m.msgno, Message::default()).await;
                }
            });
            if hold_starts {
                let held = gate.clone();
                handler = handler.on_start(move |_request, _offer| {
                    held.starts.fetch_add(1, Ordering::SeqCst);
                    // Start hooks are plain closures run on the
                    // dispatcher task: this one blocks, so it hands its
                    // runtime thread's other work over first.
                    tokio::task::block_in_place(|| held.wait());
                    StartDecision::Accept(None)
                });
            }
            registry.register(HELD, handler);
            let options = beep_tokio::Options {
                config: config(),
                release_timeout,
                ..Default::default()
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let reports = ends.clone();
            let (addr, stop, task) = runtime.block_on(async {
                let mut listener = beep_tokio::Listener::bind("127.0.0.1:0", registry, options)
                    .await
                    .expect("bind");
                listener.on_connection_end(move |p, r| reports.record(p, r));
                let addr = listener.local_addrs()[0];
                let stop = listener.shutdown_handle();
                (addr, stop, tokio::spawn(listener.serve()))
            });
            let running = Running::Tokio {
                runtime,
                stop,
                task,
            };
            (addr, running)
        }
    };
    Server {
        driver,
        addr,
        gate,
        ends,
        running,
    }
}

impl Server {
    /// An honest client on a connection of its own: connects, opens an
    /// [`ECHO`] channel, has one request echoed, releases the session
    /// (RFC 3080 2.4). Must complete within [`HONEST_WITHIN`].
    fn honest_exchange(&self, when: &str) -> Duration {
        let started = Instant::now();
        let options = beep_blocking::Options {
            connect_timeout: HONEST_WITHIN,
            channel_timeout: HONEST_WITHIN,
            release_timeout: HONEST_WITHIN,
            ..Default::default()
        };
        let exchange = || -> Result<(), String> {
            let conn = beep_blocking::Connection::connect(self.addr, options)
                .map_err(|e| format!("connect: {e}"))?;
            let channel = conn
                .open_channel(Profile::new(ECHO), None)
                .map_err(|e| format!("open echo: {e}"))?;
            match channel.request(Message::new("honest"), HONEST_WITHIN) {
                Ok(Reply::Rpy(m)) if m.body()[..] == b"honest"[..] => {}
                Ok(other) => return Err(format!("unexpected reply {other:?}")),
                Err(e) => return Err(format!("request: {e}")),
            }
            conn.close().map_err(|e| format!("release: {e}"))
        };
        if let Err(e) = exchange() {
            panic!(
                "{:?}: the honest client was not served {when}: {e}",
                self.driver
            );
        }
        let took = started.elapsed();
        assert!(
            took < HONEST_WITHIN,
            "{:?}: the honest client took {took:?} {when}",
            self.driver
        );
        took
    }

    /// Opens the gate, waits for `peer`'s connection to be reported
    /// ended once its socket is closed, and stops the listener.
    fn stop(self, peer: Option<Peer>) {
        self.gate.open();
        if let Some(peer) = peer {
            let local = peer.local;
            drop(peer);
            let ended = self.ends.wait_for(local, BOUND);
            assert!(
                ended.is_some(),
                "{:?}: the attacker's connection was never reported ended",
                self.driver
            );
        }
        match self.running {
            Running::Blocking { stop, thread } => {
                stop.shutdown();
                thread.join().expect("serve thread").expect("serve");
            }
            Running::Tokio {
                runtime,
                stop,
                task,
            } => {
                stop.shutdown();
                let served = runtime
                    .block_on(async { tokio::time::timeout(BOUND, task).await })
                    .expect("the tokio listener stops");
                served.expect("serve task").expect("serve");
            }
        }
    }
}

// ---------------------------------------------------------------------
// The attacker: a raw socket writing frames by hand (`raw_peer::Peer`).

/// A hostile peer whose writes give up after [`BOUND`], greeted (it
/// advertises nothing); panics unless the listener greets it with an RPY
/// (RFC 3080 2.3.1.1).
fn attacker(addr: SocketAddr) -> Peer {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_write_timeout(Some(BOUND)).expect("timeout");
    let mut peer = Peer::from_stream(stream);
    match peer.greeting() {
        (Kind::Rpy, _) => peer,
        (kind, payload) => panic!("greeting: {kind} {}", String::from_utf8_lossy(&payload)),
    }
}

impl Peer {
    /// Starts `channel` on `profile` (RFC 3080 2.3.1.2); panics unless
    /// the listener accepts, and grants it a large window at once.
    fn start(&mut self, channel: u32, profile: &str) {
        self.open(channel, profile);
        self.grant(channel, 1 << 24);
    }

    /// Waits until a SEQ gives room for `need` more octets on one of
    /// `channels`: false when no frame came for [`QUIET`] (the windows
    /// stopped moving). Panics if the listener closes the connection.
    fn window_moves(&mut self, channels: &[u32], need: u32) -> bool {
        loop {
            match self.frame(QUIET) {
                Ok(Frame::Seq(..)) if channels.iter().any(|c| self.room(*c) >= need) => {
                    return true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => return false,
                Err(e) => {
                    panic!("the listener closed the connection of a peer within its windows: {e}")
                }
            }
        }
    }
}

// ---------------------------------------------------------------------
// 1. MSGs within the windows.

/// What a flood got out before the windows closed.
#[derive(Debug, Default)]
struct Flooded {
    messages: usize,
    octets: usize,
    seqs: usize,
    took: Duration,
}

/// Case 1, on `driver`: see the tests.
fn within_windows(driver: Driver) {
    let _serial = serial();
    let server = serve(driver, false);
    let config = config();
    let mut peer = attacker(server.addr);
    let channels: Vec<u32> = (0..CHANNELS).map(|i| 2 * i + 1).collect();
    for &channel in &channels {
        peer.start(channel, HELD);
    }
    let rss_before = rss_kib();
    // The first MSG's handler holds the dispatcher: from now on nothing
    // of this connection is handled, and every MSG accepted is queued.
    peer.send_msg(channels[0], PAYLOAD);
    assert!(
        Gate::reached(&server.gate.messages, 1, BOUND),
        "{driver:?}: the held handler never ran"
    );
    let seqs_before = peer.seqs;
    let mut flood = Flooded {
        messages: 1,
        octets: PAYLOAD.len(),
        ..Flooded::default()
    };
    let started = Instant::now();
    let need = PAYLOAD.len() as u32;
    loop {
        let mut batch = Vec::new();
        for &channel in &channels {
            while peer.room(channel) >= need {
                batch.extend_from_slice(&peer.msg_frame(channel, PAYLOAD).1);
                flood.messages += 1;
                flood.octets += PAYLOAD.len();
            }
        }
        peer.write(&batch);
        if !peer.window_moves(&channels, need) {
            break;
        }
    }
    flood.took = started.elapsed();
    flood.seqs = peer.seqs - seqs_before;
    let rss_after = rss_kib();
    let honest = server.honest_exchange("while a peer's MSGs wait for a held handler");

    // README: the windows of one session together stay within
    // receive_budget (each at most max_receive_window; a channel's first
    // window always counts), and the MSGs unanswered within
    // max_pipelined per channel and max_pipelined_total in all.
    let channels_n = CHANNELS as usize;
    let octet_bound = (channels_n * config.max_receive_window as usize).min(
        config
            .receive_budget
            .max(channels_n * config.receive_window as usize),
    );
    let message_bound = (octet_bound / PAYLOAD.len())
        .min(channels_n * config.max_pipelined)
        .min(config.max_pipelined_total);
    let first_windows = channels_n * config.receive_window as usize / PAYLOAD.len();
    let grown_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "{driver:?}: {} MSGs ({} payload octets) in {} channels accepted in {:?} before the \
         windows closed ({} SEQ moved them); bounds: {message_bound} MSGs, {octet_bound} octets; \
         RSS {rss_before} -> {rss_after} KiB (+{grown_kib}); honest exchange {honest:?}",
        flood.messages, flood.octets, CHANNELS, flood.took, flood.seqs
    );
    assert!(
        flood.messages >= first_windows,
        "{driver:?}: the peer could not even fill the first windows (RFC 3081 3.1.1): {flood:?}"
    );
    assert!(
        flood.octets <= octet_bound,
        "{driver:?}: {flood:?} beyond the windows' bound of {octet_bound} octets"
    );
    assert!(
        flood.messages <= message_bound,
        "{driver:?}: {flood:?} beyond the bound of {message_bound} MSGs"
    );
    assert!(
        grown_kib < RSS_BOUND_KIB,
        "{driver:?}: the listener grew by {grown_kib} KiB while a peer's MSGs waited: {flood:?}"
    );

    // Every MSG accepted was queued, none lost: once the handler is let
    // go, each is handled (once) and answered, in order per channel
    // (RFC 3080 2.6.1).
    server.gate.open();
    let mut replies: HashMap<u32, u32> = HashMap::new();
    let mut answered = 0;
    let deadline = Instant::now() + BOUND;
    while answered < flood.messages {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.frame(left) {
            Ok(Frame::Data(
                Data {
                    kind: Kind::Rpy,
                    channel,
                    msgno,
                    more: false,
                },
                _,
            )) => {
                let next = replies.entry(channel).or_insert(0);
                assert_eq!(
                    msgno, *next,
                    "{driver:?}: replies out of order on {channel}"
                );
                *next += 1;
                answered += 1;
            }
            Ok(Frame::Data(
                Data {
                    kind,
                    channel,
                    msgno,
                    ..
                },
                payload,
            )) => panic!(
                "{driver:?}: {kind} {channel} {msgno}: {}",
                String::from_utf8_lossy(&payload)
            ),
            Ok(Frame::Seq(..)) => {}
            Err(e) => panic!(
                "{driver:?}: {answered} of {} MSGs answered, then: {e}",
                flood.messages
            ),
        }
    }
    assert_eq!(
        server.gate.messages.load(Ordering::SeqCst),
        flood.messages,
        "{driver:?}: handler invocations"
    );
    server.stop(Some(peer));
}

/// Issue 10, README Limits, RFC 3081 3.1.2: a peer sending 2-octet MSGs
/// on 8 channels as fast as the windows allow, while the blocking
/// listener's handler is held, gets out no more than the windows hold
/// (within `receive_budget`, `max_pipelined_total`) before they close;
/// memory stays bounded, an honest client is served, and every MSG is
/// handled once the handler returns.
#[test]
fn issue10_blocking_listener_queues_only_the_msgs_the_windows_allow_while_a_handler_waits() {
    within_windows(Driver::Blocking);
}

/// Issue 10, README Limits, RFC 3081 3.1.2: as for the blocking
/// listener, on the tokio listener (whose reader goes on reading while
/// the handler waits, so everything sent is in its action queue).
#[test]
fn issue10_tokio_listener_queues_only_the_msgs_the_windows_allow_while_a_handler_waits() {
    within_windows(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 1b. Empty MSGs: what the windows do not count.

/// Case 1b, on `driver`: see the tests.
fn empty_msgs(driver: Driver) {
    let _serial = serial();
    let server = serve(driver, false);
    let config = config();
    let mut peer = attacker(server.addr);
    let channels: Vec<u32> = (0..CHANNELS).map(|i| 2 * i + 1).collect();
    for &channel in &channels {
        peer.start(channel, HELD);
    }
    let rss_before = rss_kib();
    peer.send_msg(channels[0], PAYLOAD);
    assert!(
        Gate::reached(&server.gate.messages, 1, BOUND),
        "{driver:?}: the held handler never ran"
    );
    // Empty MSGs cost no window: as many as max_pipelined_total allows
    // in all (the held one included), spread over the channels (each
    // well within max_pipelined)...
    let limit = config.max_pipelined_total;
    let mut batch = Vec::new();
    for n in 1..limit {
        let channel = channels[n % channels.len()];
        batch.extend_from_slice(&peer.msg_frame(channel, b"").1);
    }
    let started = Instant::now();
    peer.write(&batch);
    let at_limit = peer.closed_within(QUIET);
    // ... and one more.
    peer.send_msg(channels[1], b"");
    let sent = limit + 1;
    let held_for = match driver {
        Driver::Tokio => Duration::from_secs(3),
        Driver::Blocking => QUIET,
    };
    let beyond = peer.closed_within(held_for);
    let took = started.elapsed();
    let rss_after = rss_kib();
    let honest = server.honest_exchange("beside a peer sending empty MSGs");
    // The end is reported from the dispatcher, behind the held handler.
    server.gate.open();
    let grown_kib = rss_after.saturating_sub(rss_before);
    let verdict = match beyond {
        Some(_) => server.ends.wait_for(peer.local, BOUND),
        None => {
            // Still open: every MSG must be handled once the handler returns.
            let all = Gate::reached(&server.gate.messages, sent, BOUND);
            let handled = server.gate.messages.load(Ordering::SeqCst);
            assert!(all, "{driver:?}: {handled} of {sent} MSGs handled");
            server.ends.wait_for(peer.local, Duration::ZERO)
        }
    };
    let handled = server.gate.messages.load(Ordering::SeqCst);
    eprintln!(
        "{driver:?}: {sent} MSGs of 0 octets (the first: 2) written in {took:?}; closed at the \
         limit: {at_limit:?}, after one more: {beyond:?}; {handled} handled; reported: \
         {verdict:?}; RSS {rss_before} -> {rss_after} KiB (+{grown_kib}); honest exchange \
         {honest:?}"
    );
    assert!(
        at_limit.is_none(),
        "{driver:?}: the connection closed with {limit} MSGs unanswered, max_pipelined_total \
         allows that many"
    );
    match (driver, beyond) {
        // A listener that read them all (the tokio one's reader goes on
        // reading while handlers wait) queued max_pipelined_total MSGs:
        // the one beyond ends the session.
        (_, Some(_)) => assert!(
            matches!(
                verdict,
                Some(EndReason::Violation(ProtocolError::TooManyPipelinedTotal { limit: l }))
                    if l == limit
            ),
            "{driver:?}: reported {verdict:?}"
        ),
        // The blocking listener leaves the socket unread while a handler
        // waits (see beep_blocking::ProfileHandler::new): the MSGs wait in
        // the kernel, and once the handler returns each is handled as it
        // is read, never piling up to the limit.
        (Driver::Blocking, None) => {
            assert!(verdict.is_none(), "{driver:?}: reported {verdict:?}")
        }
        (Driver::Tokio, None) => panic!(
            "{driver:?}: still open {held_for:?} after MSG {} beyond max_pipelined_total",
            limit + 1
        ),
    }
    assert!(
        grown_kib < RSS_BOUND_KIB,
        "{driver:?}: the listener grew by {grown_kib} KiB"
    );
    server.stop(Some(peer));
}

/// Issue 10, README Limits (`max_pipelined_total`): empty MSGs cost no
/// window (RFC 3081 3.1.2 counts payload octets), so the windows do not
/// bound their number; while the blocking listener's handler waits they
/// stay unread in the socket, and are all handled once it returns.
#[test]
fn issue10_blocking_listener_leaves_empty_msgs_unread_while_a_handler_waits() {
    empty_msgs(Driver::Blocking);
}

/// Issue 10, README Limits (`max_pipelined_total`): empty MSGs cost no
/// window, so the windows do not bound how many the tokio listener
/// queues while its handler waits: max_pipelined_total (65,536) does,
/// and one more ends the session with
/// `ProtocolError::TooManyPipelinedTotal`.
#[test]
fn issue10_tokio_listener_queues_at_most_max_pipelined_total_empty_msgs_while_a_handler_waits() {
    empty_msgs(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 2. MSGs beyond the window.

/// Case 2, on `driver`: see the tests.
fn beyond_window(driver: Driver) {
    let _serial = serial();
    let server = serve(driver, false);
    let mut peer = attacker(server.addr);
    peer.start(1, HELD);
    let rss_before = rss_kib();
    peer.send_msg(1, PAYLOAD);
    assert!(
        Gate::reached(&server.gate.messages, 1, BOUND),
        "{driver:?}: the held handler never ran"
    );
    // The rest of the window, within it...
    let mut within = 1;
    let mut batch = Vec::new();
    while peer.room(1) >= PAYLOAD.len() as u32 {
        batch.extend_from_slice(&peer.msg_frame(1, PAYLOAD).1);
        within += 1;
    }
    peer.write(&batch);
    // ... then 4 MiB beyond it, as 64 KiB MSGs, while the socket takes them.
    let mut big = b"\r\n".to_vec();
    big.resize(64 << 10, b'x');
    peer.stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut beyond = 0usize;
    for _ in 0..64 {
        let (_, frame) = peer.msg_frame(1, &big);
        if peer.stream.write_all(&frame).is_err() {
            break;
        }
        beyond += big.len();
    }
    // The tokio listener must close within a few seconds (it closes at
    // once); the blocking one is not expected to while its handler waits
    // (see below), so the test gives it only QUIET before letting go.
    let held_for = match driver {
        Driver::Tokio => Duration::from_secs(3),
        Driver::Blocking => QUIET,
    };
    let while_held = peer.closed_within(held_for);
    let rss_after = rss_kib();
    let honest = server.honest_exchange("beside a peer that ignored the window");
    // Let the handler go: a listener that left the socket unread while
    // its handler waited sees the excess now.
    server.gate.open();
    let after_release = match while_held {
        Some(_) => None,
        None => peer.closed_within(Duration::from_secs(3)),
    };
    let reason = server.ends.wait_for(peer.local, BOUND);
    let grown_kib = rss_after.saturating_sub(rss_before);
    let handled = server.gate.messages.load(Ordering::SeqCst);
    eprintln!(
        "{driver:?}: {within} MSGs within the window, then {beyond} octets written beyond it; \
         closed while the handler waited: {while_held:?}, after it returned: {after_release:?}; \
         {handled} handled; reported: {reason:?}; RSS {rss_before} -> {rss_after} KiB \
         (+{grown_kib}); honest exchange {honest:?}"
    );
    match driver {
        // Its reader goes on reading while handlers wait.
        Driver::Tokio => assert!(
            while_held.is_some(),
            "{driver:?}: the connection was still open {held_for:?} after the peer ignored the window"
        ),
        // A handler that waits on something else leaves the socket unread
        // (documented on beep_blocking::ProfileHandler::new): the excess
        // stays in the kernel until it returns, then ends the session.
        Driver::Blocking => assert!(
            while_held.is_some() || after_release.is_some(),
            "{driver:?}: the connection was still open 3 s after the handler returned"
        ),
    }
    assert!(
        matches!(
            reason,
            Some(EndReason::Violation(ProtocolError::WindowExceeded {
                channel: 1,
                ..
            }))
        ),
        "{driver:?}: reported {reason:?}"
    );
    assert!(
        handled <= within,
        "{driver:?}: {handled} MSGs handled, only {within} were within the window"
    );
    assert!(
        grown_kib < RSS_BOUND_KIB,
        "{driver:?}: the listener grew by {grown_kib} KiB"
    );
    server.stop(None);
}

/// Issue 10, RFC 3081 3.1.2 ("a BEEP peer must not send more than the
/// window allows"): a peer that fills the window of a channel whose
/// handler waits and then sends 4 MiB more has the session ended with
/// `ProtocolError::WindowExceeded` and its connection closed (the
/// blocking listener, which leaves the socket unread while a handler
/// waits, as soon as the handler returns), instead of a longer queue;
/// an honest client is served meanwhile.
#[test]
fn issue10_blocking_listener_ends_a_session_that_sends_beyond_the_window_of_a_waiting_handler() {
    beyond_window(Driver::Blocking);
}

/// Issue 10, RFC 3081 3.1.2: as for the blocking listener; the tokio
/// listener closes the connection while the handler still waits.
#[test]
fn issue10_tokio_listener_ends_a_session_that_sends_beyond_the_window_of_a_waiting_handler() {
    beyond_window(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 3. Starts while the start hook waits.

/// Case 3, on `driver`: see the tests.
fn held_starts(driver: Driver) {
    let _serial = serial();
    let server = serve(driver, true);
    let config = config();
    let mut peer = attacker(server.addr);
    // Channel 0's answers are never held back by our window.
    peer.grant(0, 1 << 24);
    let rss_before = rss_kib();
    let mut next_channel = 1u32;
    let first = start_payload(next_channel, HELD);
    next_channel += 2;
    peer.send_msg(0, first.as_bytes());
    assert!(
        Gate::reached(&server.gate.starts, 1, BOUND),
        "{driver:?}: the held start hook never ran"
    );
    // Starts as fast as channel 0's window allows, until it stays shut.
    let seqs_before = peer.seqs;
    let mut sent = 1usize;
    let started = Instant::now();
    loop {
        let mut batch = Vec::new();
        let mut payload = start_payload(next_channel, HELD);
        while peer.room(0) >= payload.len() as u32 {
            batch.extend_from_slice(&peer.msg_frame(0, payload.as_bytes()).1);
            sent += 1;
            next_channel += 2;
            payload = start_payload(next_channel, HELD);
        }
        peer.write(&batch);
        if !peer.window_moves(&[0], payload.len() as u32) {
            break;
        }
    }
    let took = started.elapsed();
    let seqs = peer.seqs - seqs_before;
    let rss_after = rss_kib();
    let honest = server.honest_exchange("while a peer's starts wait for a held start hook");

    // Every start is answered once the hook is let go, in order
    // (RFC 3080 2.6.1): the queued ones as the hook decides (accepted),
    // the ones beyond max_pending_starts refused with 421.
    server.gate.open();
    let mut opened = 0usize;
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut texts: BTreeMap<String, usize> = BTreeMap::new();
    let first_msgno = 1;
    let mut whole = Vec::new();
    let deadline = Instant::now() + BOUND;
    let mut answered = 0;
    while answered < sent {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.frame(left) {
            Ok(Frame::Data(
                Data {
                    kind,
                    channel: 0,
                    msgno,
                    more,
                },
                payload,
            )) if kind != Kind::Msg => {
                whole.extend_from_slice(&payload);
                if more {
                    continue;
                }
                assert_eq!(
                    msgno as usize,
                    first_msgno + answered,
                    "{driver:?}: channel 0's answers out of order"
                );
                let text = String::from_utf8_lossy(&std::mem::take(&mut whole)).into_owned();
                match kind {
                    Kind::Rpy => opened += 1,
                    Kind::Err => {
                        *codes.entry(error_code(&text).unwrap_or(0)).or_insert(0) += 1;
                        let diagnostic = text
                            .split_once("<error")
                            .and_then(|(_, e)| e.split_once('>'))
                            .and_then(|(_, e)| e.split_once("</error>"))
                            .map_or(String::new(), |(d, _)| d.to_owned());
                        *texts.entry(diagnostic).or_insert(0) += 1;
                    }
                    other => panic!("{driver:?}: {other} on channel 0: {text}"),
                }
                answered += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("{driver:?}: {answered} of {sent} starts answered, then: {e}"),
        }
    }
    let refused: usize = codes.values().sum();
    let hooks = server.gate.starts.load(Ordering::SeqCst);
    let grown_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "{driver:?}: {sent} starts ({} octets) accepted on channel 0 in {took:?} before its \
         window closed ({seqs} SEQ moved it); {opened} opened, refused: {codes:?} {texts:?}; \
         {hooks} start hooks ran; RSS {rss_before} -> {rss_after} KiB (+{grown_kib}); \
         honest exchange {honest:?}",
        peer.sent[&0]
    );
    assert!(
        opened <= config.max_pending_starts,
        "{driver:?}: {opened} starts were queued for the hook, above max_pending_starts"
    );
    assert_eq!(
        hooks, opened,
        "{driver:?}: start hooks against channels opened"
    );
    assert_eq!(
        codes.get(&421).copied().unwrap_or(0),
        refused,
        "{driver:?}: refusals other than 421: {codes:?} {texts:?}"
    );
    if sent > config.max_pending_starts {
        // The listener read them all while the hook waited: exactly
        // max_pending_starts were queued, every later one refused.
        assert_eq!(opened, config.max_pending_starts, "{driver:?}");
        assert_eq!(refused, sent - config.max_pending_starts, "{driver:?}");
    } else {
        // Below the limit nothing is refused.
        assert_eq!((opened, refused), (sent, 0), "{driver:?}");
    }
    match driver {
        // Its reader goes on reading while the hook waits: the peer gets
        // past the limit.
        Driver::Tokio => assert!(
            sent > config.max_pending_starts,
            "{driver:?}: only {sent} starts got out, max_pending_starts was never reached"
        ),
        // The socket stays unread while the hook waits (see
        // beep_blocking::ProfileHandler::new): channel 0's window stops
        // the peer long before the limit.
        Driver::Blocking => {}
    }
    assert!(
        grown_kib < RSS_BOUND_KIB,
        "{driver:?}: the listener grew by {grown_kib} KiB"
    );
    server.stop(Some(peer));
}

/// Issue 10, README Limits, RFC 3080 2.3.1.2: while the blocking
/// listener's start hook waits, a peer flooding `<start>` requests on
/// channel 0 gets at most `max_pending_starts` queued for the hook (any
/// beyond refused with 421); as the socket stays unread meanwhile,
/// channel 0's first window stops it well before the limit, and every
/// start is accepted once the hook returns; memory bounded, an honest
/// client served.
#[test]
fn issue10_blocking_listener_queues_starts_within_max_pending_starts_while_a_start_hook_waits() {
    held_starts(Driver::Blocking);
}

/// Issue 10, README Limits, RFC 3080 2.3.1.2: while the tokio listener's
/// start hook waits, a peer flooding `<start>` requests gets exactly
/// `max_pending_starts` (512) queued for the hook, and every start beyond
/// it refused with 421, until channel 0's window stays shut (its answers
/// pile up beyond `max_queued_channel0`); memory bounded, an honest
/// client served.
#[test]
fn issue10_tokio_listener_queues_starts_within_max_pending_starts_while_a_start_hook_waits() {
    held_starts(Driver::Tokio);
}
