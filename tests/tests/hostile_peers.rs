//! Issue 10: hostile peers over sockets. A listener of each driver keeps
//! serving honest peers (a channel on the echo profile, a request, its
//! echo, a release) while hostile peers attack it, and ends every hostile
//! connection and reports it through `Listener::on_connection_end`:
//! slowloris greetings, an idle crowd beside a flooder that never reads,
//! resets at every stage of a session, garbage, a burst of starts,
//! greeting floods, malformed headers, SEQ abuse, a peer that never reads
//! large replies, partial messages on many channels, starts for unknown
//! profiles, and a thousand connections at once beside a flooder.
//!
//! Each scenario is written once, for a [`Driver`]; the honest peer is a
//! `beep_blocking::Connection` against both listeners, the hostile peers
//! are raw sockets ([`Peer`]) writing frames by hand.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use beep_proto::dispatch::{EndReason, Reply};
use beep_proto::frame::{Field, FrameError};
use beep_proto::sasl::{AuthAnswer, AuthNeed, AuthRequest, Mechanism};
use beep_proto::tls::{TLS_URI, TlsClient};
use beep_proto::xml::Profile;
use beep_proto::{Message, ProtocolError};

mod raw_peer;
mod serving;
mod tls_support;

use raw_peer::{
    BOUND, Frame, Kind, Peer, XML, data_frame, error_code, greeting_frame, greeting_payload,
    start_payload,
};
use serving::ECHO;

#[derive(Debug, Clone, Copy)]
enum Driver {
    Blocking,
    Tokio,
}

/// The listener settings a scenario changes.
#[derive(Debug, Clone)]
struct Limits {
    greeting_timeout: Duration,
    receive_window: u32,
    max_queued_output: usize,
    /// `Config::max_reassembly`: what unfinished messages of one session
    /// may hold.
    max_reassembly: usize,
    /// Offer TLS (RFC 3080 3.1, a certificate of a test CA) and SASL
    /// PLAIN and SCRAM-SHA-256 (RFC 3080 4.1, decided by [`decide`]) as
    /// well as the echo profile.
    tuning: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            greeting_timeout: Duration::from_secs(30),
            receive_window: beep_proto::config::DEFAULT_WINDOW,
            max_queued_output: 4 << 20,
            max_reassembly: beep_proto::Config::default().max_reassembly,
            tuning: false,
        }
    }
}

/// The scenarios that measure this process's memory run alone (the
/// others would add their own); every other scenario shares.
static MEMORY: RwLock<()> = RwLock::new(());

/// For a scenario that does not measure memory.
fn sharing() -> RwLockReadGuard<'static, ()> {
    MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

/// For a scenario that measures memory: no other runs meanwhile.
fn alone() -> RwLockWriteGuard<'static, ()> {
    MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

/// What `on_connection_end` reported, in order.
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

    /// The reason reported for each of `peers`, once all are reported;
    /// or the peers still unreported after `limit`.
    fn wait_for(
        &self,
        peers: &[SocketAddr],
        limit: Duration,
    ) -> Result<Vec<EndReason>, Vec<SocketAddr>> {
        let find = |seen: &[(SocketAddr, EndReason)], peer: &SocketAddr| {
            seen.iter().find(|(p, _)| p == peer).map(|(_, r)| r.clone())
        };
        let guard = self.seen.lock().unwrap();
        let (seen, _) = self
            .changed
            .wait_timeout_while(guard, limit, |seen| {
                peers.iter().any(|p| find(seen, p).is_none())
            })
            .unwrap();
        let missing: Vec<SocketAddr> = peers
            .iter()
            .filter(|p| find(&seen, p).is_none())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(peers.iter().filter_map(|p| find(&seen, p)).collect())
    }

    /// Asserts every one of `peers` was reported ended within [`BOUND`],
    /// and returns the reasons.
    fn all_ended(&self, driver: Driver, what: &str, peers: &[SocketAddr]) -> Vec<EndReason> {
        match self.wait_for(peers, BOUND) {
            Ok(reasons) => reasons,
            Err(missing) => panic!(
                "{driver:?}: {} of {} {what} connections never reported ended after {BOUND:?} \
                 (first: {:?})",
                missing.len(),
                peers.len(),
                missing.first()
            ),
        }
    }
}

enum Running {
    Blocking(serving::Blocking),
    Tokio(serving::Tokio),
}

/// A listener under attack, with its connection-end reports.
struct Listening {
    driver: Driver,
    addr: SocketAddr,
    ends: Arc<Ends>,
    /// Its auth handler's slow decisions (with [`Limits::tuning`]).
    slow: Arc<SlowAuth>,
    running: Running,
}

/// The SASL users of a listener with [`Limits::tuning`]: `bob` and
/// [`SLOW_USER`], both with password `secret`.
const PASSWORD: &str = "secret";

/// The user whose PLAIN authentication the auth handler takes its time
/// to decide: it waits until the test lets it ([`SlowAuth::decide`]), at
/// most [`SLOW_LIMIT`].
const SLOW_USER: &str = "slow";

/// The longest the auth handler waits for the test to let it decide.
const SLOW_LIMIT: Duration = Duration::from_secs(2);

/// The auth handler's decisions for [`SLOW_USER`], which the test holds
/// back.
#[derive(Default)]
struct SlowAuth {
    state: Mutex<Deciding>,
    changed: Condvar,
}

#[derive(Default, Debug, Clone, Copy)]
struct Deciding {
    /// Calls for [`SLOW_USER`] so far.
    called: usize,
    /// Of these, those that returned.
    returned: usize,
    /// Of these, those that waited [`SLOW_LIMIT`] out (the test never
    /// let them decide).
    timed_out: usize,
    /// Whether the handler may decide now.
    go: bool,
}

impl SlowAuth {
    /// The handler's part for [`SLOW_USER`]: noted as called, then it
    /// waits for [`SlowAuth::let_decide`] (at most [`SLOW_LIMIT`]).
    fn wait(&self) {
        let mut state = self.state.lock().unwrap();
        state.called += 1;
        self.changed.notify_all();
        let (mut state, waited) = self
            .changed
            .wait_timeout_while(state, SLOW_LIMIT, |s| !s.go)
            .unwrap();
        state.returned += 1;
        state.timed_out += usize::from(waited.timed_out());
        self.changed.notify_all();
    }

    /// Holds the next decisions back.
    fn hold(&self) -> Deciding {
        let mut state = self.state.lock().unwrap();
        state.go = false;
        *state
    }

    /// Lets the handler decide.
    fn let_decide(&self) {
        self.state.lock().unwrap().go = true;
        self.changed.notify_all();
    }

    /// Waits (at most `limit`) until `until` holds.
    fn wait_until(&self, limit: Duration, until: impl Fn(&Deciding) -> bool) -> Deciding {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| !until(s))
            .unwrap();
        *state
    }
}

/// The auth handler of a listener with [`Limits::tuning`] (the same for
/// both drivers): PLAIN's password is checked, SCRAM gets the stored
/// secret; [`SLOW_USER`] is decided once the test lets it.
fn decide(slow: &SlowAuth, request: &AuthRequest) -> AuthAnswer {
    let user = request.authcid.as_deref();
    if user == Some(SLOW_USER) {
        slow.wait();
    } else if user != Some("bob") {
        return AuthAnswer::NoSuchUser;
    }
    match request.need {
        AuthNeed::Secret => AuthAnswer::Secret(PASSWORD.into()),
        AuthNeed::Decide if request.password.as_deref() == Some(PASSWORD) => AuthAnswer::Accept,
        AuthNeed::Decide => AuthAnswer::Deny,
    }
}

/// The SASL mechanisms of a listener with [`Limits::tuning`].
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::ScramSha256];

/// Every peer here, hostile or honest, connects from 127.0.0.1: the
/// listener's per-address limit (256 by default, which would keep the
/// honest peer out behind a crowd of 300 from its own address) is lifted,
/// so that what is tested is the listener's resources, not that limit
/// (tests/connection_limits.rs has it).
const ONE_ADDRESS: usize = 100_000;

fn listen(driver: Driver, limits: Limits) -> Listening {
    let ends = Arc::new(Ends::default());
    let slow = Arc::new(SlowAuth::default());
    let tls = limits
        .tuning
        .then(|| tls_support::Pki::new().leaf(&["localhost", "127.0.0.1"]));
    let config = beep_proto::Config {
        receive_window: limits.receive_window,
        max_reassembly: limits.max_reassembly,
        ..Default::default()
    };
    let running = match driver {
        Driver::Blocking => {
            let options = beep_blocking::Options {
                config,
                greeting_timeout: limits.greeting_timeout,
                max_queued_output: limits.max_queued_output,
                ..Default::default()
            };
            let ends = ends.clone();
            let mut registry = serving::blocking_echo();
            if let Some(leaf) = &tls {
                let slow = slow.clone();
                registry
                    .set_tls(beep_blocking::TlsAcceptor::new(leaf.server()))
                    .set_sasl(&MECHANISMS, move |request| decide(&slow, request));
            }
            Running::Blocking(serving::blocking(registry, options, move |listener| {
                listener.set_max_connections(ONE_ADDRESS, ONE_ADDRESS);
                listener.on_connection_end(move |p, r| ends.record(p, r));
            }))
        }
        Driver::Tokio => {
            let options = beep_tokio::Options {
                config,
                greeting_timeout: limits.greeting_timeout,
                max_queued_output: limits.max_queued_output,
                ..Default::default()
            };
            let ends = ends.clone();
            let mut registry = serving::tokio_echo();
            if let Some(leaf) = &tls {
                let slow = slow.clone();
                registry
                    .set_tls(beep_tokio::TlsAcceptor::new(leaf.server()))
                    .set_sasl(&MECHANISMS, move |request| decide(&slow, request));
            }
            Running::Tokio(serving::tokio(registry, options, move |listener| {
                listener.set_max_connections(ONE_ADDRESS, ONE_ADDRESS);
                listener.on_connection_end(move |p, r| ends.record(p, r));
            }))
        }
    };
    let addr = match &running {
        Running::Blocking(s) => s.addr,
        Running::Tokio(s) => s.addr,
    };
    Listening {
        driver,
        addr,
        ends,
        slow,
        running,
    }
}

impl Listening {
    /// An honest exchange on a new connection must succeed now.
    fn serves(&self, when: &str) {
        if let Err(e) = honest_exchange(self.addr, when) {
            panic!(
                "{:?}: an honest peer was not served {when}: {e}",
                self.driver
            );
        }
    }

    /// Stops the listener (which must stop, and well).
    fn stop(self) {
        match self.running {
            Running::Blocking(s) => s.stop(),
            Running::Tokio(s) => s.stop(),
        }
    }
}

// ---------------------------------------------------------------------
// The honest peer.

fn honest_options() -> beep_blocking::Options {
    beep_blocking::Options {
        connect_timeout: BOUND,
        channel_timeout: BOUND,
        release_timeout: BOUND,
        ..Default::default()
    }
}

/// Connects, echoes `text` on a new echo channel, releases.
fn honest_exchange(addr: SocketAddr, text: &str) -> Result<(), String> {
    let conn = beep_blocking::Connection::connect(addr, honest_options())
        .map_err(|e| format!("connect: {e}"))?;
    echo_on(&conn, text)?;
    conn.close().map_err(|e| format!("release: {e}"))
}

/// One echo through a new channel of `conn`.
fn echo_on(conn: &beep_blocking::Connection, text: &str) -> Result<(), String> {
    let channel = conn
        .open_channel(Profile::new(ECHO), None)
        .map_err(|e| format!("open echo: {e}"))?;
    match channel.request(Message::new(text.to_owned()), BOUND) {
        Ok(Reply::Rpy(m)) if m.body()[..] == *text.as_bytes() => Ok(()),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(format!("request: {e}")),
    }
}

/// An honest peer exchanging on new connections, again and again, while
/// an attack goes on (see [`HonestLoop::finish`]).
struct HonestLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<usize, String>>,
}

impl HonestLoop {
    /// Starts the loop against `server`; its first exchange starts now.
    fn start(server: &Listening, when: &'static str) -> HonestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.addr;
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut done = 0;
            loop {
                honest_exchange(addr, when).map_err(|e| format!("exchange {done}: {e}"))?;
                done += 1;
                if stopped.load(Ordering::Relaxed) {
                    return Ok(done);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        HonestLoop { stop, thread }
    }

    /// Stops the loop: every exchange must have succeeded (at least one,
    /// begun while the attack went on).
    fn finish(self, driver: Driver, when: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join().expect("honest peer") {
            Ok(done) => done,
            Err(e) => panic!("{driver:?}: an honest peer was not served {when}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------
// Hostile peers: raw sockets writing frames by hand (`raw_peer::Peer`).

impl Peer {
    /// A peer whose receive buffer is `size` octets (set before connecting,
    /// so the kernel does not grow it): a listener writing to it backs up.
    fn connect_small_buffer(addr: SocketAddr, size: i32) -> Peer {
        let SocketAddr::V4(v4) = addr else {
            panic!("loopback IPv4 only")
        };
        // SAFETY: a new socket, owned at once by the TcpStream; setsockopt
        // and connect read the values we pass and keep nothing.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let stream = TcpStream::from_raw_fd(fd);
            let done = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                size_of::<i32>() as libc::socklen_t,
            );
            assert_eq!(done, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
            let to = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let done = libc::connect(
                fd,
                (&to as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(done, 0, "connect: {}", std::io::Error::last_os_error());
            stream
        };
        Peer::from_stream(stream)
    }

    /// Starts `channel` on the echo profile (RFC 3080 2.3.1.2); with a
    /// `window` above 4096, waits for the SEQ announcing it (RFC 3081 3.1.4).
    fn open_echo(&mut self, channel: u32, window: u32) {
        self.open(channel, ECHO);
        while window > beep_proto::config::DEFAULT_WINDOW && !self.allowed.contains_key(&channel) {
            self.frame(BOUND).expect("the channel's window");
        }
    }

    /// Sets the receive buffer (after a flood, to read it back quickly).
    fn set_receive_buffer(&self, size: i32) {
        // SAFETY: setsockopt reads the value we pass.
        let done = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(done, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    }

    /// Closes the socket with a reset (SO_LINGER 0) instead of a FIN.
    fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads the struct we pass.
        let done = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(done, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    }
}

/// A flooder: connects with a 4096-octet receive buffer, opens an echo
/// channel (on a listener whose window is `window`), gives the listener a
/// window larger than all the echoes (RFC 3081 3.1.3: what holds them
/// back is TCP), and on a thread sends MSGs of `size` octets as fast as
/// it can, up to the window the listener announced (RFC 3081 3.1.2: a
/// peer never sends beyond it), never reading. The thread returns the
/// peer and the number of MSGs sent.
fn flood(addr: SocketAddr, window: u32, size: usize) -> std::thread::JoinHandle<(Peer, u32)> {
    let mut flooder = Peer::connect_small_buffer(addr, 4096);
    flooder.greet();
    flooder.reply(0, 0);
    flooder.open_echo(1, window);
    let seq = flooder.seq_frame(1, 4 * window);
    flooder.write(&seq);
    let mut payload = b"\r\n".to_vec();
    payload.resize(size, b'f');
    std::thread::spawn(move || {
        let mut sent = 0u32;
        while flooder.room(1) as usize >= payload.len() {
            flooder.send_msg(1, &payload);
            sent += 1;
        }
        (flooder, sent)
    })
}

/// The flooder reads at last: an echo for every one of its `sent` MSGs
/// of `size` octets, in order (RFC 3080 2.6.1).
fn read_back(driver: Driver, flooder: &mut Peer, sent: u32, size: usize) {
    flooder.set_receive_buffer(4 << 20);
    let reading = Instant::now();
    for msgno in 0..sent {
        match flooder.try_reply(1, msgno, BOUND) {
            Ok((kind, body)) => {
                assert_eq!(kind, Kind::Rpy, "{driver:?}: msgno {msgno}");
                assert_eq!(body.len(), size, "{driver:?}: msgno {msgno}");
            }
            Err(e) => panic!(
                "{driver:?}: the flooder got {msgno} of its {sent} echoes in {:?}, then: {e}",
                reading.elapsed()
            ),
        }
    }
}

/// The resident memory of this process (listener and peers), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// ---------------------------------------------------------------------
// 1. Slowloris.

/// RFC 3080 2.4: a peer greets as soon as it is connected. Fifty peers
/// that send their greeting one octet every 100 ms (and never finish it)
/// do not keep an honest peer out, and are each cut off after the
/// listener's greeting timeout (0.5 s), not before, and reported.
fn slowloris(driver: Driver) {
    let _shared = sharing();
    const PEERS: usize = 50;
    const GREETING: Duration = Duration::from_millis(500);
    let server = listen(
        driver,
        Limits {
            greeting_timeout: GREETING,
            ..Default::default()
        },
    );
    let greeting = greeting_frame();
    let connected = Instant::now();
    let mut peers: Vec<(TcpStream, SocketAddr, Option<Duration>)> = (0..PEERS)
        .map(|_| {
            let stream = TcpStream::connect(server.addr).expect("connect");
            stream.set_nonblocking(true).expect("nonblocking");
            let local = stream.local_addr().expect("addr");
            (stream, local, None)
        })
        .collect();
    let addr = server.addr;
    let honest = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        honest_exchange(addr, "during a slowloris attack")
    });
    let mut buf = [0u8; 4096];
    // The last octet is never sent.
    for octet in greeting.iter().take(greeting.len() - 1) {
        for (stream, _, cut) in peers.iter_mut().filter(|p| p.2.is_none()) {
            let mut closed = stream.write(std::slice::from_ref(octet)).is_err();
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => closed = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => closed = true,
                }
                break;
            }
            if closed {
                *cut = Some(connected.elapsed());
            }
        }
        if peers.iter().all(|p| p.2.is_some()) || connected.elapsed() > BOUND {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = honest.join().expect("honest peer") {
        panic!("{driver:?}: an honest peer was not served during the attack: {e}");
    }
    let still_open = peers.iter().filter(|p| p.2.is_none()).count();
    assert_eq!(
        still_open,
        0,
        "{driver:?}: {still_open} slowloris peers still connected after {:?}",
        connected.elapsed()
    );
    let earliest = peers.iter().filter_map(|p| p.2).min().unwrap();
    assert!(
        earliest >= GREETING,
        "{driver:?}: a slowloris peer was cut off after {earliest:?}, before the greeting timeout"
    );
    let locals: Vec<SocketAddr> = peers.iter().map(|p| p.1).collect();
    for reason in server.ends.all_ended(driver, "slowloris", &locals) {
        assert!(
            matches!(&reason, EndReason::Lost(why) if why.contains("no greeting")),
            "{driver:?}: {reason:?}"
        );
    }
    server.serves("after a slowloris attack");
    server.stop();
}

#[test]
fn rfc3080_2_4_blocking_listener_cuts_off_slowloris_greetings_and_serves_honest_peers() {
    slowloris(Driver::Blocking);
}

#[test]
fn rfc3080_2_4_tokio_listener_cuts_off_slowloris_greetings_and_serves_honest_peers() {
    slowloris(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 2. An idle crowd and a flooder.

/// 300 peers greet and sit idle; one more opens an echo channel, gives
/// the listener a window larger than all the echoes (RFC 3081 3.1.3), and
/// sends valid MSGs as fast as it can, up to the window the listener
/// announced (RFC 3081 3.1.2: a peer never sends beyond it), and never
/// reads the echoes, so the listener's output to it backs up behind an
/// 8 KiB receive buffer. Honest peers are served throughout; the process grows
/// by far less than 200 MB; once the flooder reads, every MSG has its
/// echo (the stalled connection was held, not dropped or corrupted); and
/// all 301 connections are reported ended once they leave.
fn idle_crowd_and_flooder(driver: Driver) {
    let _alone = alone();
    const IDLE: usize = 300;
    const WINDOW: u32 = 8 << 20;
    const CHUNK: usize = 4000;
    let rss_before = rss_kib();
    let server = listen(
        driver,
        Limits {
            receive_window: WINDOW,
            max_queued_output: 64 << 10,
            ..Default::default()
        },
    );
    let idle: Vec<Peer> = (0..IDLE).map(|_| Peer::greeted(server.addr)).collect();
    server.serves(&format!("beside {IDLE} idle connections"));

    let flood = flood(server.addr, WINDOW, CHUNK);
    let mut during = 0;
    while !flood.is_finished() || during == 0 {
        server.serves("during a flood");
        during += 1;
    }
    let (mut flooder, sent) = flood.join().expect("flooder");
    assert!(
        sent as usize >= WINDOW as usize / CHUNK - 1,
        "{driver:?}: sent {sent}"
    );
    server.serves("with the flooder's output backed up");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 200 << 10,
        "{driver:?}: the process grew by {grown} KiB under the flood"
    );

    read_back(driver, &mut flooder, sent, CHUNK);

    let mut locals: Vec<SocketAddr> = idle.iter().map(|p| p.local).collect();
    locals.push(flooder.local);
    drop(idle);
    drop(flooder);
    server.ends.all_ended(driver, "idle or flooding", &locals);
    server.serves("after the idle crowd and the flooder left");
    server.stop();
}

#[test]
fn rfc3081_3_1_blocking_listener_serves_honest_peers_beside_an_idle_crowd_and_a_flooder() {
    idle_crowd_and_flooder(Driver::Blocking);
}

#[test]
fn rfc3081_3_1_tokio_listener_serves_honest_peers_beside_an_idle_crowd_and_a_flooder() {
    idle_crowd_and_flooder(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 3. Resets at every stage.

/// Where in a session a peer resets its connection.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Before anything is sent.
    AfterConnect,
    /// Half of its greeting sent (RFC 3080 2.3.1.1).
    MidGreeting,
    /// Greetings exchanged.
    AfterGreeting,
    /// Half of a `<start>` MSG sent (RFC 3080 2.3.1.2).
    MidStart,
    /// An echo channel open, half of a MSG sent.
    HalfMsg,
    /// 1 MiB of MSGs sent, their echoes backed up behind a small receive
    /// buffer: the listener is writing to it.
    DuringReply,
    /// It asked to release the session (RFC 3080 2.3.1.3) and got the
    /// `<ok/>`: the listener is draining and waiting for its close.
    DuringRelease,
    /// It asked for TLS (`<ready />` piggybacked on the start, as
    /// LibVortex does: RFC 3080 3.1.1), got `<proceed />` and wrote half
    /// of a real ClientHello: the listener's TLS handshake is under way.
    MidTlsHandshake,
    /// It began SCRAM-SHA-256 (RFC 3080 4.1, RFC 7677), its client-first
    /// message piggybacked on the start, and got the server-first
    /// challenge in the start's reply: the listener waits for its proof.
    MidSasl,
    /// It began PLAIN as [`SLOW_USER`], its credentials piggybacked on
    /// the start: the listener's auth handler is deciding (held back by
    /// the test) when the reset comes, and answers a dead session after.
    WhileAuthDecides,
}

const STAGES: [Stage; 10] = [
    Stage::AfterConnect,
    Stage::MidGreeting,
    Stage::AfterGreeting,
    Stage::MidStart,
    Stage::HalfMsg,
    Stage::DuringReply,
    Stage::DuringRelease,
    Stage::MidTlsHandshake,
    Stage::MidSasl,
    Stage::WhileAuthDecides,
];

/// A start (RFC 3080 2.3.1.2) of `uri` on `channel` with `content`
/// piggybacked (RFC 3080 2.3.1.2: the profile element's content, here in
/// a CDATA section).
fn piggybacked_start(channel: u32, uri: &str, content: &str) -> String {
    format!(
        "{XML}<start number='{channel}'>\r\n   <profile uri='{uri}'><![CDATA[{content}]]></profile>\r\n</start>\r\n"
    )
}

/// The first flight of a real TLS client (a ClientHello, RFC 8446 4.1.2),
/// as an initiator of beep-proto (rustls in memory) writes it after
/// `<proceed />`: it asks for TLS on a session whose greeting offers it,
/// and is answered as LibVortex answers (the proceed piggybacked).
fn client_hello() -> Vec<u8> {
    let mut session = beep_proto::Session::initiator(beep_proto::Config::default());
    let client = TlsClient::dangerous_accept_any_certificate("localhost").expect("a TLS client");
    session.start_tls(client).expect("start_tls");
    let greeting = format!("{XML}<greeting><profile uri='{TLS_URI}' /></greeting>\r\n");
    let proceed = format!("{XML}<profile uri='{TLS_URI}'><![CDATA[<proceed />]]></profile>\r\n");
    session
        .handle_input(&data_frame("RPY", 0, 0, 0, greeting.as_bytes()))
        .expect("greeting");
    // Our greeting and the start with <ready />.
    while session.poll_transmit().is_some() {}
    session
        .handle_input(&data_frame(
            "RPY",
            0,
            0,
            greeting.len() as u32,
            proceed.as_bytes(),
        ))
        .expect("proceed");
    while session.poll_event().is_some() {}
    let mut hello = Vec::new();
    while let Some(bytes) = session.poll_transmit() {
        hello.extend_from_slice(&bytes);
    }
    // A handshake record (22), TLS 1.x, holding a ClientHello (1).
    assert!(
        hello.len() > 9 && hello[0] == 22 && hello[1] == 3 && hello[5] == 1,
        "not a ClientHello: {:02x?}",
        &hello[..hello.len().min(16)]
    );
    hello
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (RFC 4648 4), as SASL blobs carry it (RFC 3080 4.1.2).
fn base64(data: &[u8]) -> String {
    let mut text = String::new();
    for chunk in data.chunks(3) {
        let octet = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = (octet(0) << 16) | (octet(1) << 8) | octet(2);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(BASE64[((bits >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// The octets of base64 `text`; None if it is not base64.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let (mut bits, mut held) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let value = BASE64.iter().position(|&b| b == c)? as u32;
        bits = ((bits << 6) | value) & 0xffff;
        held += 6;
        if held >= 8 {
            held -= 8;
            data.push((bits >> held) as u8);
        }
    }
    Some(data)
}

/// The nonce of the SCRAM client-first message of [`Stage::MidSasl`].
const SCRAM_NONCE: &str = "hostile-peer-nonce-3081";

/// The window of the reset scenario's listener: room for the 1 MiB of
/// MSGs whose echoes are being written when the peer resets.
const RESET_WINDOW: u32 = 1 << 20;

/// Takes a peer to `stage`, then resets; returns its address.
fn reset_at(server: &Listening, stage: Stage) -> SocketAddr {
    let addr = server.addr;
    let mut peer = match stage {
        Stage::DuringReply => Peer::connect_small_buffer(addr, 4096),
        _ => Peer::connect(addr),
    };
    match stage {
        Stage::AfterConnect => {}
        Stage::MidGreeting => {
            let greeting = greeting_frame();
            peer.write(&greeting[..greeting.len() / 2]);
            peer.frame(BOUND).expect("the listener's greeting");
        }
        Stage::AfterGreeting => {
            peer.greet();
            peer.reply(0, 0);
        }
        Stage::MidStart => {
            peer.greet();
            peer.reply(0, 0);
            let (_, frame) = peer.msg_frame(0, start_payload(1, ECHO).as_bytes());
            peer.write(&frame[..frame.len() / 2]);
        }
        Stage::HalfMsg => {
            peer.greet();
            peer.reply(0, 0);
            peer.open_echo(1, RESET_WINDOW);
            let (_, frame) = peer.msg_frame(1, b"\r\nhalf of a message");
            peer.write(&frame[..frame.len() / 2]);
        }
        Stage::DuringReply => {
            peer.greet();
            peer.reply(0, 0);
            peer.open_echo(1, RESET_WINDOW);
            let seq = peer.seq_frame(1, 4 * RESET_WINDOW);
            peer.write(&seq);
            let mut payload = b"\r\n".to_vec();
            payload.resize(4000, b'r');
            while peer.room(1) as usize >= payload.len() {
                peer.send_msg(1, &payload);
            }
            // The first echo arriving: the listener is writing them.
            while !matches!(peer.frame(BOUND).expect("an echo"), Frame::Data(h, _) if h.channel == 1)
            {
            }
        }
        Stage::DuringRelease => {
            peer.greet();
            peer.reply(0, 0);
            let close = format!("{XML}<close number='0' code='200' />\r\n");
            let msgno = peer.send_msg(0, close.as_bytes());
            let (kind, _) = peer.reply(0, msgno);
            assert_eq!(kind, Kind::Rpy, "release refused");
        }
        Stage::MidTlsHandshake => {
            peer.greet();
            peer.reply(0, 0);
            let start = piggybacked_start(1, TLS_URI, "<ready />");
            let msgno = peer.send_msg(0, start.as_bytes());
            let (kind, reply) = peer.reply(0, msgno);
            let reply = String::from_utf8_lossy(&reply);
            assert!(
                kind == Kind::Rpy && reply.contains("<proceed"),
                "TLS refused: {kind:?} {reply}"
            );
            let hello = client_hello();
            peer.write(&hello[..hello.len() / 2]);
            // Half a record gets no answer: nothing to wait for but a
            // moment for the listener to read it.
            std::thread::sleep(Duration::from_millis(50));
        }
        Stage::MidSasl => {
            peer.greet();
            peer.reply(0, 0);
            let first = format!("n,,n=bob,r={SCRAM_NONCE}");
            let blob = format!("<blob>{}</blob>", base64(first.as_bytes()));
            let start = piggybacked_start(1, Mechanism::ScramSha256.uri(), &blob);
            let msgno = peer.send_msg(0, start.as_bytes());
            let (kind, reply) = peer.reply(0, msgno);
            let reply = String::from_utf8_lossy(&reply);
            assert_eq!(kind, Kind::Rpy, "SCRAM refused: {reply}");
            let challenge = reply
                .split_once("<blob>")
                .and_then(|(_, rest)| rest.split_once("</blob>"))
                .and_then(|(blob, _)| unbase64(blob.trim()))
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_else(|| panic!("no challenge in the start's reply: {reply}"));
            // RFC 5802 5.1: r= our nonce and the listener's, s= salt,
            // i= iterations.
            assert!(
                challenge.starts_with(&format!("r={SCRAM_NONCE}"))
                    && challenge.contains(",s=")
                    && challenge.contains(",i="),
                "not a server-first message: {challenge}"
            );
        }
        Stage::WhileAuthDecides => {
            peer.greet();
            peer.reply(0, 0);
            let before = server.slow.hold();
            let credentials = format!("\0{SLOW_USER}\0{PASSWORD}");
            let blob = format!("<blob>{}</blob>", base64(credentials.as_bytes()));
            let start = piggybacked_start(1, Mechanism::Plain.uri(), &blob);
            peer.send_msg(0, start.as_bytes());
            let deciding = server.slow.wait_until(BOUND, |s| s.called > before.called);
            assert!(
                deciding.called > before.called,
                "{:?}: the auth handler was not asked about {SLOW_USER} within {BOUND:?}",
                server.driver
            );
            let local = peer.local;
            peer.reset();
            // The listener notices the reset while its handler decides
            // (whether it reports the end before the handler returns is
            // its affair: noted, not asserted).
            let ended_first = server
                .ends
                .wait_for(&[local], Duration::from_millis(300))
                .is_ok();
            let still = server.slow.wait_until(Duration::ZERO, |_| true);
            assert_eq!(
                still.returned, before.returned,
                "{:?}: the auth handler returned before it was let decide",
                server.driver
            );
            server.slow.let_decide();
            let done = server
                .slow
                .wait_until(BOUND, |s| s.returned >= deciding.called);
            assert!(
                done.returned >= deciding.called && done.timed_out == 0,
                "{:?}: the auth handler, let decide, did not return within {BOUND:?}: {done:?}",
                server.driver
            );
            eprintln!(
                "{:?}: reset while the auth handler decided; reported ended {} it returned",
                server.driver,
                if ended_first { "before" } else { "after" }
            );
            return local;
        }
    }
    let local = peer.local;
    peer.reset();
    local
}

/// Peers reset their connections at every stage of a session, three at
/// each, the TLS handshake and SASL exchanges included (the listener
/// offers both). The listener serves honest peers between them (on a
/// connection made before the first reset, and on new ones), reports
/// every reset connection ended, as lost, within a bound (so none hangs,
/// or leaks a handler waiting to write), and stops cleanly afterwards.
fn resets(driver: Driver) {
    let _shared = sharing();
    let server = listen(
        driver,
        Limits {
            receive_window: RESET_WINDOW,
            tuning: true,
            ..Default::default()
        },
    );
    let honest = beep_blocking::Connection::connect(server.addr, honest_options())
        .expect("an honest peer connects");
    let mut locals = Vec::new();
    for stage in STAGES {
        for _ in 0..3 {
            locals.push((stage, reset_at(&server, stage)));
        }
        if let Err(e) = echo_on(&honest, "between resets") {
            panic!("{driver:?}: an honest peer was not served after resets {stage:?}: {e}");
        }
        server.serves(&format!("after resets {stage:?}"));
    }
    // Each peer reset while the auth handler decided: it was asked, and
    // returned once let decide (not at its own time limit).
    let slow = server.slow.wait_until(Duration::ZERO, |_| true);
    let deciding = locals
        .iter()
        .filter(|(s, _)| matches!(s, Stage::WhileAuthDecides))
        .count();
    assert_eq!(
        (slow.called, slow.returned, slow.timed_out),
        (deciding, deciding, 0),
        "{driver:?}: the auth handler's slow decisions: {slow:?}"
    );
    let addrs: Vec<SocketAddr> = locals.iter().map(|(_, a)| *a).collect();
    let reasons = server.ends.all_ended(driver, "reset", &addrs);
    for ((stage, _), reason) in locals.iter().zip(reasons) {
        // A peer that reset after its release was agreed ended released.
        let released = matches!(stage, Stage::DuringRelease) && reason == EndReason::Released;
        assert!(
            matches!(reason, EndReason::Lost(_)) || released,
            "{driver:?}: reset {stage:?} ended as {reason:?}"
        );
    }
    honest.close().expect("the honest peer releases");
    server.stop();
}

#[test]
fn blocking_listener_reports_every_reset_connection_ended_at_every_stage() {
    resets(Driver::Blocking);
}

#[test]
fn tokio_listener_reports_every_reset_connection_ended_at_every_stage() {
    resets(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 4. Garbage.

/// Deterministic noise (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Sends `garbage` on a new connection and expects it closed within the
/// bound and reported as a protocol violation.
fn garbage_is_cut_off(server: &Listening, what: &str, greet_first: bool, garbage: &[u8]) {
    let mut peer = if greet_first {
        Peer::greeted(server.addr)
    } else {
        Peer::connect(server.addr)
    };
    peer.write(garbage);
    if peer.closed_within(BOUND).is_none() {
        panic!(
            "{:?}: a peer sending {what} is still connected after {BOUND:?}",
            server.driver
        );
    }
    let reasons = server.ends.all_ended(server.driver, what, &[peer.local]);
    assert!(
        matches!(reasons[0], EndReason::Violation(_)),
        "{:?}: {what}: {:?}",
        server.driver,
        reasons[0]
    );
}

/// Random octets, a header announcing 2^31-1 octets on channel 0 (beyond
/// its window: RFC 3081 3.1.2), and a size beyond 31 bits (RFC 3080 2.2.1)
/// each get their connection closed as a violation; a SEQ for channel 99,
/// never opened, is ignored (it may cross our `<ok/>` to a close, RFC
/// 3080 2.3.1.3) and the session goes on. An honest connection made
/// before the garbage is served after each, and new ones after all.
fn garbage(driver: Driver) {
    let _shared = sharing();
    let server = listen(driver, Limits::default());
    let honest = beep_blocking::Connection::connect(server.addr, honest_options())
        .expect("an honest peer connects");
    let served = |when: &str| {
        if let Err(e) = echo_on(&honest, when) {
            panic!("{driver:?}: an honest peer was not served {when}: {e}");
        }
    };

    garbage_is_cut_off(&server, "random octets", false, &noise(4096));
    served("after random octets");

    let greeted = greeting_payload().len();
    let huge = format!("MSG 0 1 . {greeted} 2147483647\r\n");
    garbage_is_cut_off(&server, "a 2^31-1 octet frame", true, huge.as_bytes());
    served("after a huge frame header");

    garbage_is_cut_off(
        &server,
        "a size beyond 31 bits",
        true,
        format!("MSG 0 1 . {greeted} 99999999999\r\n").as_bytes(),
    );
    served("after a size beyond 31 bits");

    let mut peer = Peer::greeted(server.addr);
    peer.write(b"SEQ 99 0 4096\r\n");
    peer.open_echo(1, beep_proto::config::DEFAULT_WINDOW);
    let msgno = peer.send_msg(1, b"\r\nafter SEQ 99");
    assert_eq!(peer.reply(1, msgno).0, Kind::Rpy, "{driver:?}");
    served("after a SEQ for channel 99");
    drop(peer);

    honest.close().expect("the honest peer releases");
    server.serves("after the garbage");
    server.stop();
}

#[test]
fn rfc3080_2_2_1_blocking_listener_closes_connections_that_send_garbage() {
    garbage(Driver::Blocking);
}

#[test]
fn rfc3080_2_2_1_tokio_listener_closes_connections_that_send_garbage() {
    garbage(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 5. A burst of starts.

/// What the listener answered to a burst of starts.
#[derive(Debug, Default)]
struct Answers {
    opened: usize,
    refused: usize,
    /// Refusals by the code of their `<error>` (RFC 3080 2.3.1.2).
    codes: std::collections::BTreeMap<u16, usize>,
}

/// One peer sends `starts` start requests (`start(n)` is the payload of
/// the n-th), pipelined on channel 0 as fast as channel 0's window allows
/// (RFC 3081 3.1.2), reading the answers on another thread and
/// acknowledging them (RFC 3081 3.1.3: a peer that does not stalls only
/// itself, once channel 0's answers fill the window). Every start must be
/// answered; returns the peer (still connected) and the answers.
fn burst_of_starts(
    server: &Listening,
    starts: u32,
    start: impl Fn(u32) -> String,
) -> (Peer, Answers) {
    let driver = server.driver;
    let mut peer = Peer::greeted(server.addr);
    let mut reader = peer.reader();
    let local = peer.local;
    // Channel 0's window, as the reader learns it.
    let allowed = Arc::new((Mutex::new(peer.room(0) + peer.sent[&0]), Condvar::new()));
    // Whole frames: the reader's SEQs go between the writer's starts.
    let writing = Arc::new(Mutex::new(()));
    let answers = {
        let (allowed, writing) = (allowed.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut answers = Answers::default();
            let deadline = Instant::now() + 3 * BOUND;
            while answers.opened + answers.refused < starts as usize {
                let left = deadline.saturating_duration_since(Instant::now());
                match reader.frame(left) {
                    Ok(Frame::Seq(0, ackno, window)) => {
                        *allowed.0.lock().unwrap() = ackno.wrapping_add(window);
                        allowed.1.notify_all();
                    }
                    Ok(Frame::Data(h, payload)) if h.channel == 0 => {
                        let seq = reader.seq_frame(0, 16 << 10);
                        let guard = writing.lock().unwrap();
                        reader.write(&seq);
                        drop(guard);
                        if h.more {
                            continue;
                        }
                        let text = String::from_utf8_lossy(&payload);
                        match h.kind {
                            Kind::Rpy => answers.opened += 1,
                            Kind::Err => {
                                answers.refused += 1;
                                let code = error_code(&text).unwrap_or(0);
                                *answers.codes.entry(code).or_insert(0) += 1;
                            }
                            other => panic!("{other:?} on channel 0: {text}"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err((answers, e)),
                }
            }
            Ok(answers)
        })
    };
    for n in 0..starts {
        let (_, frame) = peer.msg_frame(0, start(n).as_bytes());
        let sent_after = peer.sent[&0];
        let (lock, changed) = &*allowed;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout_while(guard, BOUND, |allowed| {
                allowed.wrapping_sub(sent_after) > i32::MAX as u32
            })
            .unwrap();
        let stalled = timeout.timed_out().then(|| *guard);
        drop(guard);
        if let Some(allowed) = stalled {
            let _ = peer.stream.shutdown(std::net::Shutdown::Both);
            let answered = answers.join();
            let ended = server.ends.wait_for(&[local], BOUND);
            panic!(
                "{driver:?}: channel 0's window stayed closed after {n} starts \
                 (sent {sent_after}, allowed {allowed}); the reader: {answered:?}; \
                 the connection: {ended:?}"
            );
        }
        let _guard = writing.lock().unwrap();
        peer.write(&frame);
    }
    match answers.join().expect("reader") {
        Ok(answers) => (peer, answers),
        Err((answers, e)) => panic!("{driver:?}: not every start was answered: {e}; {answers:?}"),
    }
}

/// One peer asks for 10,000 echo channels at once (odd numbers, RFC 3080
/// 2.3.1.2; see [`burst_of_starts`]). Every start is answered; no more
/// than `max_channels` (1024) open, the rest are refused with an error
/// (421); an honest peer is served during the burst and after, and the
/// burst's connection is reported ended when it leaves.
fn start_burst(driver: Driver) {
    let _shared = sharing();
    const STARTS: u32 = 10_000;
    let server = listen(driver, Limits::default());
    let addr = server.addr;
    let honest = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        honest_exchange(addr, "during a burst of starts")
    });
    let (peer, answers) = burst_of_starts(&server, STARTS, |n| start_payload(2 * n + 1, ECHO));
    if let Err(e) = honest.join().expect("honest peer") {
        panic!("{driver:?}: an honest peer was not served during a burst of starts: {e}");
    }
    assert!(
        answers.opened <= 1024 && answers.refused >= STARTS as usize - 1024,
        "{driver:?}: {answers:?}"
    );
    assert_eq!(
        answers.codes.get(&421).copied(),
        Some(answers.refused),
        "{driver:?}: {answers:?}"
    );
    let local = peer.local;
    drop(peer);
    server.ends.all_ended(driver, "start burst", &[local]);
    server.serves("after a burst of starts");
    server.stop();
}

#[test]
fn rfc3080_2_3_1_2_blocking_listener_refuses_a_burst_of_10000_starts_beyond_its_limits() {
    start_burst(Driver::Blocking);
}

#[test]
fn rfc3080_2_3_1_2_tokio_listener_refuses_a_burst_of_10000_starts_beyond_its_limits() {
    start_burst(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 6. Greeting floods.

/// Sends `*` frames of `keyword` on each `(channel, msgno)` of `targets`,
/// with payloads from `next(room)`, as fast as the windows allow (RFC 3081
/// 3.1.2: never beyond them), reading the listener's SEQs (RFC 3081 3.1.3)
/// for more room, and never finishing a message, until the listener
/// closes the connection: Ok with the octets sent then. An error if the
/// connection is open after [`BOUND`] or the windows stay closed.
fn pour(
    peer: &mut Peer,
    keyword: &str,
    targets: &[(u32, u32)],
    mut next: impl FnMut(usize) -> Vec<u8>,
) -> Result<usize, String> {
    let deadline = Instant::now() + BOUND;
    let mut poured = 0;
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "still connected after {BOUND:?} and {poured} octets"
            ));
        }
        let mut wrote = false;
        for &(channel, msgno) in targets {
            let room = peer.room(channel).min(64 << 10) as usize;
            if room == 0 {
                continue;
            }
            let payload = next(room);
            let frame = peer.partial_frame(keyword, channel, msgno, &payload);
            if peer.try_write(&frame).is_err() {
                return Ok(poured);
            }
            poured += payload.len();
            wrote = true;
        }
        // Take in the listener's SEQs; wait for one when out of room.
        let wait = if wrote {
            Duration::from_millis(1)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        loop {
            match peer.frame(wait) {
                Ok(_) if wrote => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    if wrote {
                        break;
                    }
                    return Err(format!("the windows stayed closed after {poured} octets"));
                }
                Err(_) => return Ok(poured),
            }
        }
    }
}

/// The payloads of an endless message: `head`, then `element(i)` for
/// i = 0, 1, 2..., cut to the room each frame has.
fn endless(head: String, mut element: impl FnMut(usize) -> String) -> impl FnMut(usize) -> Vec<u8> {
    let mut pending = head.into_bytes();
    let mut i = 0;
    move |room| {
        while pending.len() < room {
            pending.extend_from_slice(element(i).as_bytes());
            i += 1;
        }
        pending.drain(..room).collect()
    }
}

/// The reason the listener reported for `peer`, which must have been
/// closed within the bound.
fn ended_as(server: &Listening, what: &str, peer: &mut Peer) -> EndReason {
    if peer.closed_within(BOUND).is_none() {
        panic!(
            "{:?}: a peer sending {what} is still connected after {BOUND:?}",
            server.driver
        );
    }
    server.ends.all_ended(server.driver, what, &[peer.local])[0].clone()
}

/// Makes the `n`th piece of a greeting flood.
type FloodMaker = Box<dyn FnMut(usize) -> String>;

/// RFC 3080 2.3.1.1: a greeting is one message, which the listener holds
/// until it is complete; `max_greeting` (16 KiB) bounds it. Three peers
/// flood it while an honest peer exchanges again and again on new
/// connections (and once after):
/// * a header announcing a 2^31-1 octet greeting, then octets forever:
///   the header alone is a violation, of channel 0's window (RFC 3081
///   3.1.2; the window is checked before the greeting's size, so the
///   reason names the window, not the greeting);
/// * a greeting sent in `*` frames within the window, filler forever:
///   ended as `GreetingTooLarge` once beyond 16 KiB;
/// * a greeting of endless `<profile>` elements, likewise.
fn greeting_flood(driver: Driver) {
    let _shared = sharing();
    let server = listen(driver, Limits::default());
    let honest = HonestLoop::start(&server, "during greeting floods");

    let mut peer = Peer::connect(server.addr);
    peer.write(b"RPY 0 0 . 0 2147483647\r\n");
    let filler = vec![b'g'; 64 << 10];
    let started = Instant::now();
    while peer.try_write(&filler).is_ok() {
        assert!(
            started.elapsed() < BOUND,
            "{driver:?}: a 2^31-1 octet greeting still read after {BOUND:?}"
        );
    }
    let reason = ended_as(&server, "a 2^31-1 octet greeting", &mut peer);
    assert!(
        matches!(
            reason,
            EndReason::Violation(ProtocolError::WindowExceeded {
                channel: 0,
                size: 2147483647,
                ..
            })
        ),
        "{driver:?}: a 2^31-1 octet greeting: {reason:?}"
    );

    let head = format!("{XML}<greeting>\r\n");
    let floods: [(&str, FloodMaker); 2] = [
        (
            "an endless greeting",
            Box::new(|_| "<!-- filler -->\r\n".into()),
        ),
        (
            "a greeting of endless profiles",
            Box::new(|i| format!("<profile uri='http://example.org/beep/p{i}' />\r\n")),
        ),
    ];
    for (what, element) in floods {
        let mut peer = Peer::connect(server.addr);
        let poured = pour(&mut peer, "RPY", &[(0, 0)], endless(head.clone(), element))
            .unwrap_or_else(|e| panic!("{driver:?}: {what}: {e}"));
        let reason = ended_as(&server, what, &mut peer);
        assert!(
            matches!(
                &reason,
                EndReason::Violation(ProtocolError::GreetingTooLarge { limit: 16384 })
            ) && reason.to_string().contains("greeting"),
            "{driver:?}: {what} ({poured} octets sent): {reason:?}"
        );
    }

    honest.finish(driver, "during greeting floods");
    server.serves("after greeting floods");
    server.stop();
}

#[test]
fn rfc3080_2_3_1_1_blocking_listener_ends_sessions_whose_greeting_floods_it() {
    greeting_flood(Driver::Blocking);
}

#[test]
fn rfc3080_2_3_1_1_tokio_listener_ends_sessions_whose_greeting_floods_it() {
    greeting_flood(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 7. Malformed headers.

/// Header lines the core rejects (beep-proto's tests/malformed.rs), each
/// after a greeting, where the next octet on channel 0 is `seqno`: a
/// name, the octets, and the error they must end the session with.
fn malformed_headers(seqno: usize) -> Vec<(&'static str, Vec<u8>, FrameError)> {
    let line = |text: String| text.into_bytes();
    let mut endless = format!("MSG 0 1 . {seqno} ").into_bytes();
    endless.resize(200, b'1');
    vec![
        (
            "a bad keyword",
            line(format!("MSX 0 1 . {seqno} 0\r\n")),
            FrameError::UnknownKeyword,
        ),
        (
            "a non-numeric msgno",
            line(format!("MSG 0 x . {seqno} 0\r\n")),
            FrameError::Malformed {
                field: Field::Msgno,
            },
        ),
        (
            "a size of 2^31",
            line(format!("MSG 0 1 . {seqno} 2147483648\r\n")),
            FrameError::OutOfRange {
                field: Field::Size,
                max: 2147483647,
            },
        ),
        (
            "a header that never ends",
            endless,
            FrameError::HeaderTooLong { limit: 128 },
        ),
        (
            "a negative msgno",
            line(format!("MSG 0 -1 . {seqno} 0\r\n")),
            FrameError::Malformed {
                field: Field::Msgno,
            },
        ),
        (
            "two spaces after the keyword",
            line(format!("MSG  0 1 . {seqno} 0\r\n")),
            FrameError::Malformed {
                field: Field::Channel,
            },
        ),
        (
            "a space before the CRLF",
            line(format!("MSG 0 1 . {seqno} 0 \r\n")),
            FrameError::TrailingJunk { after: Field::Size },
        ),
    ]
}

/// RFC 3080 2.2.1.1: a poorly-formed header ends the session. Each header
/// of [`malformed_headers`] is sent by a greeted peer all at once, and by
/// another one octet per segment (the listener sees it piecemeal); each
/// connection is closed and reported ended with that header's error. An
/// honest connection made before is served after each, and honest peers
/// on new connections throughout and after.
fn malformed_header_lines(driver: Driver) {
    let _shared = sharing();
    let server = listen(driver, Limits::default());
    let honest = HonestLoop::start(&server, "during malformed headers");
    let kept = beep_blocking::Connection::connect(server.addr, honest_options())
        .expect("an honest peer connects");
    for (what, header, expected) in malformed_headers(greeting_payload().len()) {
        for piecemeal in [false, true] {
            let mut peer = Peer::greeted(server.addr);
            if piecemeal {
                peer.stream.set_nodelay(true).expect("nodelay");
                for octet in &header {
                    if peer.try_write(std::slice::from_ref(octet)).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            } else {
                peer.write(&header);
            }
            let what = format!("{what} (piecemeal: {piecemeal})");
            let reason = ended_as(&server, &what, &mut peer);
            assert_eq!(
                reason,
                EndReason::Violation(ProtocolError::Frame(expected.clone())),
                "{driver:?}: {what}"
            );
            if let Err(e) = echo_on(&kept, "between malformed headers") {
                panic!("{driver:?}: an honest peer was not served after {what}: {e}");
            }
        }
    }
    kept.close().expect("the honest peer releases");
    honest.finish(driver, "during malformed headers");
    server.serves("after malformed headers");
    server.stop();
}

#[test]
fn rfc3080_2_2_1_1_blocking_listener_ends_sessions_on_malformed_headers_however_split() {
    malformed_header_lines(Driver::Blocking);
}

#[test]
fn rfc3080_2_2_1_1_tokio_listener_ends_sessions_on_malformed_headers_however_split() {
    malformed_header_lines(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 8. SEQ abuse.

/// RFC 3081 3.1.3: a SEQ acknowledging octets the listener never sent
/// (on channel 0 one past its greeting, on an echo channel where it sent
/// nothing) is a violation, and so is a window beyond 2^31-1 (RFC 3081
/// 3.1.3's range, a header error). Each ends its session, reported with
/// that error, while honest peers are served.
fn seq_violations(driver: Driver) {
    let _shared = sharing();
    let server = listen(driver, Limits::default());
    let honest = HonestLoop::start(&server, "during SEQ violations");

    let mut peer = Peer::greeted(server.addr);
    let greeting = peer.received[&0];
    peer.write(format!("SEQ 0 {} 4096\r\n", greeting + 1).as_bytes());
    let reason = ended_as(&server, "a SEQ acknowledging octets never sent", &mut peer);
    assert_eq!(
        reason,
        EndReason::Violation(ProtocolError::AckBeyondSent {
            channel: 0,
            ackno: greeting + 1,
            sent: greeting
        }),
        "{driver:?}"
    );

    let mut peer = Peer::greeted(server.addr);
    peer.open_echo(1, beep_proto::config::DEFAULT_WINDOW);
    peer.write(b"SEQ 1 1000 4096\r\n");
    let reason = ended_as(&server, "a SEQ acknowledging octets never sent", &mut peer);
    assert_eq!(
        reason,
        EndReason::Violation(ProtocolError::AckBeyondSent {
            channel: 1,
            ackno: 1000,
            sent: 0
        }),
        "{driver:?}"
    );

    let mut peer = Peer::greeted(server.addr);
    peer.open_echo(1, beep_proto::config::DEFAULT_WINDOW);
    peer.write(b"SEQ 1 0 2147483648\r\n");
    let reason = ended_as(&server, "a SEQ window of 2^31", &mut peer);
    assert_eq!(
        reason,
        EndReason::Violation(ProtocolError::Frame(FrameError::OutOfRange {
            field: Field::Window,
            max: 2147483647
        })),
        "{driver:?}"
    );

    honest.finish(driver, "during SEQ violations");
    server.serves("after SEQ violations");
    server.stop();
}

#[test]
fn rfc3081_3_1_3_blocking_listener_ends_sessions_on_seqs_beyond_what_was_sent_or_allowed() {
    seq_violations(Driver::Blocking);
}

#[test]
fn rfc3081_3_1_3_tokio_listener_ends_sessions_on_seqs_beyond_what_was_sent_or_allowed() {
    seq_violations(Driver::Tokio);
}

/// RFC 3081 3.1.3: a peer may keep its window shut. It opens an echo
/// channel, sends SEQ with window 0 (which cannot take back the 4096
/// octets of RFC 3081 3.1.1), and sends 40 requests of 1000 octets
/// (reading, and acknowledging with window 0, whatever comes): only the
/// echoes that fit in 4096 octets arrive, the others wait. Its session
/// stays (it is within the rules) while honest peers are served; when it
/// opens its window at last, every echo arrives; when it leaves, it is
/// reported lost.
fn window_held_shut(driver: Driver) {
    let _shared = sharing();
    const REQUESTS: usize = 40;
    const SIZE: usize = 1000;
    let server = listen(driver, Limits::default());
    let honest = HonestLoop::start(&server, "beside a window held shut");
    let mut peer = Peer::greeted(server.addr);
    peer.open_echo(1, beep_proto::config::DEFAULT_WINDOW);
    peer.write(b"SEQ 1 0 0\r\n");
    let mut payload = b"\r\n".to_vec();
    payload.resize(SIZE, b'w');
    let mut echoes = 0;
    // Acknowledges an echo's frame with window 0; 1 for a whole echo.
    let take = |peer: &mut Peer, frame: Frame| match frame {
        Frame::Data(h, _) if h.channel == 1 => {
            assert_eq!(h.kind, Kind::Rpy, "{driver:?}");
            let seq = peer.seq_frame(1, 0);
            peer.write(&seq);
            usize::from(!h.more)
        }
        _ => 0,
    };
    let mut sent = 0;
    while sent < REQUESTS {
        if peer.room(1) as usize >= SIZE {
            peer.send_msg(1, &payload);
            sent += 1;
        } else {
            let frame = peer
                .frame(BOUND)
                .expect("the listener's SEQ for more requests");
            echoes += take(&mut peer, frame);
        }
    }
    // What the listener may send arrives; then nothing more.
    while let Ok(frame) = peer.frame(Duration::from_millis(500)) {
        echoes += take(&mut peer, frame);
    }
    assert!(
        echoes <= 4096 / SIZE,
        "{driver:?}: {echoes} echoes of {SIZE} octets came through a 4096-octet window"
    );
    server.serves("beside a window held shut");
    assert!(
        server.ends.wait_for(&[peer.local], Duration::ZERO).is_err(),
        "{driver:?}: the session of a peer holding its window shut was ended"
    );

    let seq = peer.seq_frame(1, 1 << 20);
    peer.write(&seq);
    let deadline = Instant::now() + BOUND;
    while echoes < REQUESTS {
        match peer.frame(deadline.saturating_duration_since(Instant::now())) {
            Ok(frame) => echoes += take(&mut peer, frame),
            Err(e) => panic!(
                "{driver:?}: {echoes} of {REQUESTS} echoes once the window opened, then: {e}"
            ),
        }
    }
    let local = peer.local;
    drop(peer);
    let reason = server.ends.all_ended(driver, "window held shut", &[local]);
    assert!(
        matches!(reason[0], EndReason::Lost(_)),
        "{driver:?}: {:?}",
        reason[0]
    );
    honest.finish(driver, "beside a window held shut");
    server.serves("after a window held shut");
    server.stop();
}

#[test]
fn rfc3081_3_1_3_blocking_listener_holds_replies_for_a_window_held_shut_and_serves_others() {
    window_held_shut(Driver::Blocking);
}

#[test]
fn rfc3081_3_1_3_tokio_listener_holds_replies_for_a_window_held_shut_and_serves_others() {
    window_held_shut(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 9. A peer that never reads large replies.

/// The flooder of [`idle_crowd_and_flooder`] with large messages and the
/// default output bound: on a listener whose window is 16 MiB (a peer
/// that reads nothing learns no SEQ, so the window it was given is all it
/// can send: RFC 3081 3.1.2) and whose `max_queued_output` is the default
/// 4 MiB, it sends 64 echo requests of 256 KiB each, without reading,
/// behind a 4096-octet receive buffer. Honest peers are served
/// throughout; the process (listener and peers) grows by less than
/// 64 MiB (the window it gave, what it may queue, and slack for copies;
/// about 20 MiB is usual); and once the flooder reads, every echo
/// arrives whole.
fn never_reads_large_replies(driver: Driver) {
    let _alone = alone();
    const WINDOW: u32 = 16 << 20;
    const SIZE: usize = 256 << 10;
    let server = listen(
        driver,
        Limits {
            receive_window: WINDOW,
            ..Default::default()
        },
    );
    server.serves("before a flood of large requests");
    let before = rss_kib();
    let mut peak = before;
    let flood = flood(server.addr, WINDOW, SIZE);
    let mut during = 0;
    while !flood.is_finished() || during == 0 {
        server.serves("during a flood of large requests");
        peak = peak.max(rss_kib());
        during += 1;
    }
    let (mut flooder, sent) = flood.join().expect("flooder");
    assert!(
        sent as usize >= WINDOW as usize / SIZE - 1,
        "{driver:?}: sent {sent}"
    );
    for _ in 0..5 {
        server.serves("with large replies backed up");
        peak = peak.max(rss_kib());
    }
    let grown = peak.saturating_sub(before);
    eprintln!("{driver:?}: {sent} requests of {SIZE} octets, the process grew by {grown} KiB");
    assert!(
        grown < 64 << 10,
        "{driver:?}: the process grew by {grown} KiB under {sent} requests of {SIZE} octets"
    );
    read_back(driver, &mut flooder, sent, SIZE);
    let local = flooder.local;
    drop(flooder);
    server.ends.all_ended(driver, "large flood", &[local]);
    server.serves("after a flood of large requests");
    server.stop();
}

#[test]
fn rfc3081_3_1_blocking_listener_bounds_its_memory_for_a_peer_that_never_reads_large_replies() {
    never_reads_large_replies(Driver::Blocking);
}

#[test]
fn rfc3081_3_1_tokio_listener_bounds_its_memory_for_a_peer_that_never_reads_large_replies() {
    never_reads_large_replies(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 10. Partial messages on many channels.

/// The reassembly budget of the partial-message scenario's listener.
const REASSEMBLY: usize = 1 << 20;

/// `Config::max_reassembly` bounds what unfinished messages hold in a
/// session. A peer opens 64 echo channels and on each starts a MSG in `*`
/// frames (RFC 3080 2.2.1.1) that it never finishes, as fast as the
/// windows allow (4096 octets each to start, RFC 3081 3.1.1). The windows
/// do not stop it: credit for the frames of an unfinished message goes
/// back at once while the application keeps up (the message-size limit
/// bounds each one), so the listener keeps reopening them; what stops it
/// is the budget (1 MiB here, 64 MiB by default): the session ends with
/// `ReassemblyBudgetExceeded`, once the peer has sent about that much.
/// Honest peers are served throughout and after.
fn partial_messages(driver: Driver) {
    let _shared = sharing();
    const CHANNELS: u32 = 64;
    let server = listen(
        driver,
        Limits {
            max_reassembly: REASSEMBLY,
            ..Default::default()
        },
    );
    let honest = HonestLoop::start(&server, "beside partial messages");
    let mut peer = Peer::greeted(server.addr);
    let targets: Vec<(u32, u32)> = (0..CHANNELS).map(|i| (2 * i + 1, 0)).collect();
    for &(channel, _) in &targets {
        peer.open_echo(channel, beep_proto::config::DEFAULT_WINDOW);
        // Room for the next start's answer (RFC 3081 3.1.3).
        let seq = peer.seq_frame(0, beep_proto::config::DEFAULT_WINDOW);
        peer.write(&seq);
    }
    let mut first = true;
    let poured = pour(&mut peer, "MSG", &targets, |room| {
        let mut payload = if first { b"\r\n".to_vec() } else { Vec::new() };
        first = false;
        payload.resize(room, b'p');
        payload
    })
    .unwrap_or_else(|e| panic!("{driver:?}: partial messages on {CHANNELS} channels: {e}"));
    let reason = ended_as(&server, "partial messages", &mut peer);
    assert_eq!(
        reason,
        EndReason::Violation(ProtocolError::ReassemblyBudgetExceeded { limit: REASSEMBLY }),
        "{driver:?}: after {poured} octets"
    );
    assert!(
        poured > REASSEMBLY / 2,
        "{driver:?}: ended after {poured} octets only"
    );
    honest.finish(driver, "beside partial messages");
    server.serves("after partial messages");
    server.stop();
}

#[test]
fn rfc3080_2_2_1_1_blocking_listener_ends_sessions_whose_partial_messages_exceed_its_budget() {
    partial_messages(Driver::Blocking);
}

#[test]
fn rfc3080_2_2_1_1_tokio_listener_ends_sessions_whose_partial_messages_exceed_its_budget() {
    partial_messages(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 11. Starts for unknown profiles.

/// RFC 3080 2.3.1.2: a start none of whose profiles the listener supports
/// is refused with 550. A peer sends 2,000 of them in a burst (see
/// [`burst_of_starts`]): every one is answered with an `<error>` of code
/// 550, none opens, the session goes on (an echo channel opens on it
/// afterwards), and honest peers are served throughout and after.
fn unknown_profiles(driver: Driver) {
    let _shared = sharing();
    const STARTS: u32 = 2_000;
    let server = listen(driver, Limits::default());
    let honest = HonestLoop::start(&server, "during starts for unknown profiles");
    let (mut peer, answers) = burst_of_starts(&server, STARTS, |n| {
        format!(
            "{XML}<start number='{}'>\r\n<profile uri='http://example.org/beep/none-{n}' />\r\n</start>\r\n",
            2 * n + 1
        )
    });
    assert_eq!(answers.opened, 0, "{driver:?}: {answers:?}");
    assert_eq!(
        answers.codes.get(&550).copied(),
        Some(STARTS as usize),
        "{driver:?}: {answers:?}"
    );
    peer.open_echo(1, beep_proto::config::DEFAULT_WINDOW);
    let msgno = peer.send_msg(1, b"\r\nafter 2,000 refusals");
    assert_eq!(peer.reply(1, msgno).0, Kind::Rpy, "{driver:?}");
    honest.finish(driver, "during starts for unknown profiles");
    let local = peer.local;
    drop(peer);
    server.ends.all_ended(driver, "unknown profiles", &[local]);
    server.serves("after starts for unknown profiles");
    server.stop();
}

#[test]
fn rfc3080_2_3_1_2_blocking_listener_refuses_a_burst_of_starts_for_unknown_profiles_with_550() {
    unknown_profiles(Driver::Blocking);
}

#[test]
fn rfc3080_2_3_1_2_tokio_listener_refuses_a_burst_of_starts_for_unknown_profiles_with_550() {
    unknown_profiles(Driver::Tokio);
}

// ---------------------------------------------------------------------
// 12. A thousand connections at once.

/// One request and its echo on each of `count` connections of the async
/// client, all open at once: every one connects and opens its channel,
/// then every one asks, then every one releases. The errors, by
/// connection.
fn crowd_of_clients(addr: SocketAddr, count: usize) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let options = || beep_tokio::Options {
        connect_timeout: 3 * BOUND,
        channel_timeout: 3 * BOUND,
        release_timeout: 3 * BOUND,
        ..Default::default()
    };
    runtime.block_on(async move {
        let mut errors = Vec::new();
        let opening: Vec<_> = (0..count)
            .map(|_| {
                tokio::spawn(async move {
                    let conn = beep_tokio::Connection::connect(addr, options())
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    let channel = conn
                        .open_channel(Profile::new(ECHO), None)
                        .await
                        .map_err(|e| format!("open echo: {e}"))?;
                    Ok::<_, String>((conn, channel))
                })
            })
            .collect();
        let mut open = Vec::new();
        for (i, task) in opening.into_iter().enumerate() {
            match task.await.expect("client task") {
                Ok(both) => open.push((i, both)),
                Err(e) => errors.push(format!("client {i}: {e}")),
            }
        }
        let asking: Vec<_> = open
            .into_iter()
            .map(|(i, (conn, channel))| {
                tokio::spawn(async move {
                    let text = format!("client {i} of a crowd");
                    let reply = channel.request(Message::new(text.clone()), 3 * BOUND).await;
                    let result = match reply {
                        Ok(Reply::Rpy(m)) if m.body()[..] == *text.as_bytes() => Ok(()),
                        Ok(other) => Err(format!("unexpected reply {other:?}")),
                        Err(e) => Err(format!("request: {e}")),
                    };
                    (i, conn, result)
                })
            })
            .collect();
        let mut asked = Vec::new();
        for task in asking {
            let (i, conn, result) = task.await.expect("client task");
            match result {
                Ok(()) => asked.push((i, conn)),
                Err(e) => errors.push(format!("client {i}: {e}")),
            }
        }
        let releasing: Vec<_> = asked
            .into_iter()
            .map(|(i, conn)| {
                tokio::spawn(async move {
                    conn.close()
                        .await
                        .map_err(|e| format!("client {i}: release: {e}"))
                })
            })
            .collect();
        for task in releasing {
            if let Err(e) = task.await.expect("client task") {
                errors.push(e);
            }
        }
        errors
    })
}

/// 1,000 honest clients of the async driver, all connected at once,
/// each echo a request while a flooder (as in [`idle_crowd_and_flooder`])
/// sends MSGs it never reads the echoes of: all 1,000 are served, and
/// an honest peer after them.
fn thousand_clients_beside_a_flooder(driver: Driver) {
    let _shared = sharing();
    const CLIENTS: usize = 1_000;
    const WINDOW: u32 = 8 << 20;
    const CHUNK: usize = 4000;
    let server = listen(
        driver,
        Limits {
            receive_window: WINDOW,
            max_queued_output: 64 << 10,
            ..Default::default()
        },
    );
    let flood = flood(server.addr, WINDOW, CHUNK);
    let errors = crowd_of_clients(server.addr, CLIENTS);
    assert!(
        errors.is_empty(),
        "{driver:?}: {} of {CLIENTS} clients failed beside a flooder; first: {:?}",
        errors.len(),
        errors.first()
    );
    let (flooder, sent) = flood.join().expect("flooder");
    assert!(sent > 0, "{driver:?}: the flooder sent nothing");
    let local = flooder.local;
    drop(flooder);
    server.ends.all_ended(driver, "flooder", &[local]);
    server.serves("after a thousand clients");
    server.stop();
}

#[test]
fn tokio_listener_serves_a_thousand_concurrent_clients_beside_a_flooder() {
    thousand_clients_beside_a_flooder(Driver::Tokio);
}

#[test]
fn blocking_listener_serves_a_thousand_concurrent_clients_beside_a_flooder() {
    thousand_clients_beside_a_flooder(Driver::Blocking);
}
