//! What one idle connection costs a blocking listener, in threads and
//! memory (Linux: read from `/proc/self`). A measurement, not a check:
//! run it by hand, in release mode, alone:
//!
//! ```text
//! cargo test -p beep-blocking --release --test idle_cost -- --ignored --nocapture
//! ```
//!
//! `BEEP_IDLE_CONNECTIONS` sets how many connections (200 by default).
//! Each is greeted, opens an echo channel and has one 100-octet round trip,
//! then stays open and silent. The clients are hand-driven
//! `beep_proto::Session`s in this process that keep only their sockets, so
//! the figures are the listener's.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use beep_blocking::{Listener, Options, ProfileHandler, Registry};
use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, Session};

const ECHO: &str = "http://example.org/beep/echo";

/// A connection that greeted, opened an echo channel and had one round
/// trip; only its socket is kept.
fn idle_client(addr: SocketAddr, buf: &mut [u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut session = Session::initiator(Config::default());
    let mut pump = |session: &mut Session, until: &mut dyn FnMut(Event) -> bool| loop {
        session.write_to(&mut stream).expect("write");
        while let Some(event) = session.poll_event() {
            if until(event) {
                return;
            }
        }
        let n = stream.read(&mut buf[..]).expect("read");
        assert!(n > 0, "the listener closed the connection");
        session.handle_input(&buf[..n]).expect("valid input");
    };
    pump(&mut session, &mut |e| matches!(e, Event::Greeting(_)));
    let channel = session
        .open_channel(vec![Profile::new(ECHO)], None)
        .expect("start");
    pump(&mut session, &mut |e| {
        matches!(e, Event::ChannelOpened { .. })
    });
    session
        .send_msg(channel, Message::new(vec![b'x'; 100]))
        .expect("send");
    pump(&mut session, &mut |e| matches!(e, Event::Message(_)));
    session.write_to(&mut stream).expect("write");
    stream.flush().expect("flush");
    stream
}

/// The process's threads, and fields of `/proc/self/status` and
/// `/proc/self/smaps_rollup` in KiB.
#[derive(Debug, Clone, Copy)]
struct Sample {
    threads: usize,
    rss: u64,
    private_dirty: u64,
    virt: u64,
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn sample() -> Sample {
    // Let the threads of the new connections settle into their waits.
    std::thread::sleep(Duration::from_millis(300));
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    Sample {
        threads: std::fs::read_dir("/proc/self/task").unwrap().count(),
        rss: field(&rollup, "Rss:"),
        private_dirty: field(&rollup, "Private_Dirty:"),
        virt: field(&status, "VmSize:"),
    }
}

#[test]
#[ignore = "a measurement: run by hand (see the module documentation)"]
fn an_idle_connection_costs_the_blocking_listener_threads_and_memory() {
    let n: usize = std::env::var("BEEP_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = std::thread::spawn(move || listener.serve());
    let mut buf = vec![0u8; 16 << 10];
    // A few first, so that one-time costs (allocator arenas, the
    // listener's threads) fall before the baseline.
    let mut clients: Vec<TcpStream> = (0..8).map(|_| idle_client(addr, &mut buf)).collect();
    let before = sample();
    clients.extend((0..n).map(|_| idle_client(addr, &mut buf)));
    let after = sample();
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    println!("{n} idle connections on a blocking listener, per connection:");
    println!(
        "  threads {:.2}, Rss {:.1} KiB, Private_Dirty {:.1} KiB, VmSize {:.0} KiB",
        (after.threads - before.threads) as f64 / n as f64,
        per(before.rss, after.rss),
        per(before.private_dirty, after.private_dirty),
        per(before.virt, after.virt),
    );
    println!("  before {before:?}\n  after  {after:?}");
    drop(clients);
    stop.shutdown();
    serving.join().unwrap().unwrap();
}
