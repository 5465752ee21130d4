//! Loopback benchmarks of beep-blocking beside raw TCP in the same run.
//!
//! Run: `cargo bench -p beep-blocking --bench loopback` (add `-- --seconds
//! N` for the time of each measurement, 1 by default, and `--rounds R` for
//! how often raw TCP and beep alternate on each row, 3 by default; `--only TEXT`
//! runs the rows whose label contains TEXT, `--side raw` or `--side beep`
//! one side only, e.g. under `perf stat`). Prints one table of medians:
//!
//! * ping-pong: 100-byte request, echoed, one at a time (round trips/s);
//! * pipelined: 100-byte messages echoed with many in flight (messages/s);
//! * bulk: 64 KiB messages to a sink (MiB/s), on 1 and 8 channels, with
//!   1 MiB windows and 64 KiB frames, and with the default configuration;
//! * TLS rows: ping-pong and bulk again over TLS (RFC 3080 3.1, started on
//!   the connection before its channels), beside plain raw TCP: the ratio
//!   is what TLS and BEEP cost together.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use beep_blocking::{Connection, Listener, Options, ProfileHandler, Registry};
use beep_proto::dispatch::TlsAcceptor;
use beep_proto::tls::{TlsClient, TlsServer};
use beep_proto::xml::Profile;
use beep_proto::{Config, Message};

#[path = "../../benches/table.rs"]
mod table;
use table::{arg, row, runs, selected};

const ECHO: &str = "http://example.org/beep/echo";
const SINK: &str = "http://example.org/beep/sink";
const SMALL: usize = 100;
const BULK: usize = 64 << 10;

fn main() {
    let seconds = arg("--seconds").unwrap_or(1.0);
    let rounds = arg("--rounds").map_or(3, |r: f64| r.max(1.0) as usize);
    let run = Duration::from_secs_f64(seconds);
    let tuned = Options {
        config: Config {
            receive_window: 1 << 20,
            max_frame_size: 64 << 10,
            ..Config::default()
        },
        ..Options::default()
    };
    let default = Options::default();

    println!(
        "| benchmark | raw TCP | beep-blocking | ratio (median, range over {rounds} rounds) |"
    );
    println!("|---|---|---|---|");
    // Raw and beep alternate, so a slow stretch of the machine hits both.
    let measure = |label: &str, raw: &dyn Fn() -> f64, beep: &dyn Fn() -> f64| {
        if !selected(label) {
            return;
        }
        let (mut raws, mut beeps) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            if runs("raw") {
                raws.push(raw());
            }
            if runs("beep") {
                beeps.push(beep());
            }
        }
        row(label, &raws, &beeps);
    };
    measure(
        "ping-pong 100 B (round trips/s)",
        &|| raw_pingpong(run),
        &|| beep_pingpong(&default, false, run),
    );
    measure(
        "pipelined 100 B (messages/s)",
        &|| raw_pipelined(run),
        &|| beep_pipelined(&tuned, run),
    );
    for (label, options, channels) in [
        ("bulk 64 KiB, 1 channel, 1 MiB window (MiB/s)", &tuned, 1),
        ("bulk 64 KiB, 8 channels, 1 MiB window (MiB/s)", &tuned, 8),
        ("bulk 64 KiB, 1 channel, defaults (MiB/s)", &default, 1),
        ("bulk 64 KiB, 8 channels, defaults (MiB/s)", &default, 8),
    ] {
        measure(label, &|| raw_bulk(run), &|| {
            beep_bulk(options, channels, false, run)
        });
    }
    measure(
        "TLS ping-pong 100 B (round trips/s)",
        &|| raw_pingpong(run),
        &|| beep_pingpong(&default, true, run),
    );
    measure(
        "TLS bulk 64 KiB, 1 channel, 1 MiB window (MiB/s)",
        &|| raw_bulk(run),
        &|| beep_bulk(&tuned, 1, true, run),
    );
}

/// The listener's certificate (generated once per run) and a client that
/// pins it.
fn tls() -> &'static (TlsServer, TlsClient) {
    static TLS: std::sync::OnceLock<(TlsServer, TlsClient)> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = cert.signing_key.serialize_pem();
        let server = TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).unwrap();
        let client = TlsClient::pinned(cert.cert.der().clone(), "localhost").unwrap();
        (server, client)
    })
}

/// A connection to `addr`, over TLS when `secure`.
fn connect(addr: std::net::SocketAddr, options: &Options, secure: bool) -> Connection {
    let conn = Connection::connect(addr, options.clone()).unwrap();
    if secure {
        conn.start_tls(tls().1.clone()).unwrap();
    }
    conn
}

/// A raw TCP echo server answering fixed-size messages.
fn raw_echo_server(size: usize) -> std::net::SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in socket.incoming() {
            let Ok(mut stream) = stream else { return };
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; size.max(64 << 10)];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn raw_pingpong(run: Duration) -> f64 {
    let addr = raw_echo_server(SMALL);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let msg = [b'x'; SMALL];
    let mut buf = [0u8; SMALL];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        stream.write_all(&msg).unwrap();
        stream.read_exact(&mut buf).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn raw_pipelined(run: Duration) -> f64 {
    let addr = raw_echo_server(SMALL);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut bytes = 0u64;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                return;
            }
            bytes += n as u64;
            counter.store(bytes / SMALL as u64, Ordering::Relaxed);
        }
    });
    let batch = vec![b'x'; SMALL * 256];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < run {
        stream.write_all(&batch).unwrap();
        sent += 256;
        while sent - received.load(Ordering::Relaxed) > 4096 {
            std::hint::spin_loop();
        }
    }
    while received.load(Ordering::Relaxed) < sent {
        std::thread::yield_now();
    }
    sent as f64 / start.elapsed().as_secs_f64()
}

fn raw_bulk(run: Duration) -> f64 {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        let mut buf = vec![0u8; BULK];
        let mut total = 0u64;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    let msg = vec![b'x'; BULK];
    let start = Instant::now();
    while start.elapsed() < run {
        stream.write_all(&msg).unwrap();
    }
    drop(stream);
    let total = sink.join().unwrap();
    total as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64
}

fn beep_server(options: &Options) -> (std::net::SocketAddr, beep_blocking::ShutdownHandle) {
    let mut registry = Registry::new();
    registry.set_tls(TlsAcceptor::new(tls().0.clone()));
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    registry.register(
        SINK,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, Message::default());
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, options.clone()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    std::thread::spawn(move || listener.serve());
    (addr, stop)
}

fn beep_pingpong(options: &Options, secure: bool, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options);
    let conn = connect(addr, options, secure);
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let msg = Message::new(vec![b'x'; SMALL]);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        channel
            .request(msg.clone(), Duration::from_secs(30))
            .unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close();
    stop.shutdown();
    rate
}

fn beep_pipelined(options: &Options, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options);
    let conn = Connection::connect(addr, options.clone()).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let replies = Arc::new(AtomicU64::new(0));
    let counter = replies.clone();
    channel.set_message_handler(move |_, _| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let msg = Message::new(vec![b'x'; SMALL]);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < run {
        conn.batch(|| {
            for _ in 0..256 {
                channel.send_msg(msg.clone()).unwrap();
            }
        });
        sent += 256;
        while sent - replies.load(Ordering::Relaxed) > 4096 {
            assert!(conn.is_ok(), "{:?}", conn.close_reason());
            std::thread::yield_now();
        }
    }
    while replies.load(Ordering::Relaxed) < sent {
        assert!(conn.is_ok(), "{:?}", conn.close_reason());
        std::thread::yield_now();
    }
    let rate = sent as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close();
    stop.shutdown();
    rate
}

fn beep_bulk(options: &Options, channels: usize, secure: bool, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options);
    let conn = connect(addr, options, secure);
    let msg = Message::new(vec![b'x'; BULK]);
    let start = Instant::now();
    let workers: Vec<_> = (0..channels)
        .map(|_| {
            let channel = conn.open_channel(Profile::new(SINK), None).unwrap();
            let replies = Arc::new(AtomicU64::new(0));
            let counter = replies.clone();
            channel.set_message_handler(move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
            let msg = msg.clone();
            std::thread::spawn(move || {
                // Stream: sending waits only for window and queue room.
                let mut sent = 0u64;
                while start.elapsed() < run {
                    channel.send_msg(msg.clone()).unwrap();
                    sent += 1;
                }
                while replies.load(Ordering::Relaxed) < sent {
                    std::thread::yield_now();
                }
                sent
            })
        })
        .collect();
    let messages: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let rate = messages as f64 * BULK as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64;
    let _ = conn.close();
    stop.shutdown();
    rate
}
