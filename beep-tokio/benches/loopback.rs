//! Loopback benchmarks of beep-tokio beside raw tokio TCP in the same run.
//!
//! Run: `cargo bench -p beep-tokio --bench loopback` (add `-- --seconds N`
//! for the time of each measurement, 1 by default, and `--rounds R` for how
//! often raw TCP and beep alternate on each row, 3 by default; `--only TEXT` runs
//! the rows whose label contains TEXT, `--side raw` or `--side beep` one
//! side only, e.g. under `perf stat`). Prints one table of medians:
//!
//! * ping-pong: 100-byte request, echoed, one at a time (round trips/s);
//! * pipelined: 100-byte messages echoed with up to 4096 in flight
//!   (messages/s);
//! * bulk: 64 KiB messages to a sink (MiB/s) on 1 and 8 channels, with
//!   1 MiB windows and 64 KiB frames, and with the default configuration;
//! * TLS rows: ping-pong and bulk again over TLS (RFC 3080 3.1, started on
//!   the connection before its channels), beside plain raw TCP: the ratio
//!   is what TLS and BEEP cost together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use beep_proto::dispatch::TlsAcceptor;
use beep_proto::tls::{TlsClient, TlsServer};
use beep_proto::xml::Profile;
use beep_proto::{Config, Message};
use beep_tokio::{Connection, Listener, Options, ProfileHandler, Registry, ShutdownHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tuned = Options {
            config: Config {
                receive_window: 1 << 20,
                max_frame_size: 64 << 10,
                ..Config::default()
            },
            ..Options::default()
        };
        println!(
            "| benchmark | raw TCP (tokio) | beep-tokio | ratio (median, range over {rounds} rounds) |"
        );
        println!("|---|---|---|---|");
        // Raw and beep alternate, so a slow stretch of the machine hits both.
        let (mut raws, mut beeps) = (Vec::new(), Vec::new());
        for _ in 0..rounds * usize::from(selected("ping-pong")) {
            if runs("raw") {
                raws.push(raw_pingpong(run).await);
            }
            if runs("beep") {
                beeps.push(beep_pingpong(&Options::default(), false, run).await);
            }
        }
        row("ping-pong 100 B (round trips/s)", &raws, &beeps);
        let (mut raws, mut beeps) = (Vec::new(), Vec::new());
        for _ in 0..rounds * usize::from(selected("pipelined")) {
            if runs("raw") {
                raws.push(raw_pipelined(run).await);
            }
            if runs("beep") {
                beeps.push(beep_pipelined(&tuned, run).await);
            }
        }
        row("pipelined 100 B (messages/s)", &raws, &beeps);
        let defaults = Options::default();
        for (label, options, channels) in [
            ("bulk 64 KiB, 1 channel, 1 MiB window (MiB/s)", &tuned, 1),
            ("bulk 64 KiB, 8 channels, 1 MiB window (MiB/s)", &tuned, 8),
            ("bulk 64 KiB, 1 channel, defaults (MiB/s)", &defaults, 1),
            ("bulk 64 KiB, 8 channels, defaults (MiB/s)", &defaults, 8),
        ] {
            let (mut raws, mut beeps) = (Vec::new(), Vec::new());
            for _ in 0..rounds * usize::from(selected(label)) {
                if runs("raw") {
                    raws.push(raw_bulk(run).await);
                }
                if runs("beep") {
                    beeps.push(beep_bulk(options, channels, false, run).await);
                }
            }
            row(label, &raws, &beeps);
        }
        let label = "TLS ping-pong 100 B (round trips/s)";
        let (mut raws, mut beeps) = (Vec::new(), Vec::new());
        for _ in 0..rounds * usize::from(selected(label)) {
            if runs("raw") {
                raws.push(raw_pingpong(run).await);
            }
            if runs("beep") {
                beeps.push(beep_pingpong(&Options::default(), true, run).await);
            }
        }
        row(label, &raws, &beeps);
        let label = "TLS bulk 64 KiB, 1 channel, 1 MiB window (MiB/s)";
        let (mut raws, mut beeps) = (Vec::new(), Vec::new());
        for _ in 0..rounds * usize::from(selected(label)) {
            if runs("raw") {
                raws.push(raw_bulk(run).await);
            }
            if runs("beep") {
                beeps.push(beep_bulk(&tuned, 1, true, run).await);
            }
        }
        row(label, &raws, &beeps);
    });
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
async fn connect(addr: std::net::SocketAddr, options: &Options, secure: bool) -> Connection {
    let conn = Connection::connect(addr, options.clone()).await.unwrap();
    if secure {
        conn.start_tls(tls().1.clone()).await.unwrap();
    }
    conn
}

async fn raw_echo_server() -> std::net::SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
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

async fn raw_pingpong(run: Duration) -> f64 {
    let mut stream = TcpStream::connect(raw_echo_server().await).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let msg = [b'x'; SMALL];
    let mut buf = [0u8; SMALL];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        stream.write_all(&msg).await.unwrap();
        stream.read_exact(&mut buf).await.unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn raw_pipelined(run: Duration) -> f64 {
    let stream = TcpStream::connect(raw_echo_server().await).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut bytes = 0u64;
        while let Ok(n) = reader.read(&mut buf).await {
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
        writer.write_all(&batch).await.unwrap();
        sent += 256;
        while sent - received.load(Ordering::Relaxed) > 4096 {
            tokio::task::yield_now().await;
        }
    }
    while received.load(Ordering::Relaxed) < sent {
        tokio::task::yield_now().await;
    }
    sent as f64 / start.elapsed().as_secs_f64()
}

async fn raw_bulk(run: Duration) -> f64 {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut stream, _) = socket.accept().await.unwrap();
        let mut buf = vec![0u8; BULK];
        let mut total = 0u64;
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let msg = vec![b'x'; BULK];
    let start = Instant::now();
    while start.elapsed() < run {
        stream.write_all(&msg).await.unwrap();
    }
    drop(stream);
    let total = sink.await.unwrap();
    total as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64
}

async fn beep_server(options: &Options) -> (std::net::SocketAddr, ShutdownHandle) {
    let mut registry = Registry::new();
    registry.set_tls(TlsAcceptor::new(tls().0.clone()));
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }),
    );
    registry.register(
        SINK,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, Message::default()).await;
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, options.clone())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    tokio::spawn(listener.serve());
    (addr, stop)
}

async fn beep_pingpong(options: &Options, secure: bool, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options).await;
    let conn = connect(addr, options, secure).await;
    let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let msg = Message::new(vec![b'x'; SMALL]);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        channel
            .request(msg.clone(), Duration::from_secs(30))
            .await
            .unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close().await;
    stop.shutdown();
    rate
}

async fn beep_pipelined(options: &Options, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options).await;
    let conn = Connection::connect(addr, options.clone()).await.unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let replies = Arc::new(AtomicU64::new(0));
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (counter, notify) = (replies.clone(), arrived.clone());
    channel.set_message_handler(move |_, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        notify.notify_one();
        async {}
    });
    let msg = Message::new(vec![b'x'; SMALL]);
    let start = Instant::now();
    let mut sent = 0u64;
    // Waits for replies without spinning: a busy waiter would take a core
    // from the connection's own tasks on a small machine.
    let wait_for = |target: u64| {
        let (replies, arrived, conn) = (replies.clone(), arrived.clone(), conn.clone());
        async move {
            while replies.load(Ordering::Relaxed) < target {
                assert!(conn.is_ok(), "{:?}", conn.close_reason());
                let _ = tokio::time::timeout(Duration::from_millis(100), arrived.notified()).await;
            }
        }
    };
    while start.elapsed() < run {
        for _ in 0..256 {
            channel.send_msg(msg.clone()).await.unwrap();
        }
        sent += 256;
        wait_for(sent.saturating_sub(4096)).await;
    }
    wait_for(sent).await;
    let rate = sent as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close().await;
    stop.shutdown();
    rate
}

async fn beep_bulk(options: &Options, channels: usize, secure: bool, run: Duration) -> f64 {
    let (addr, stop) = beep_server(options).await;
    let conn = connect(addr, options, secure).await;
    let msg = Message::new(vec![b'x'; BULK]);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..channels {
        let channel = conn.open_channel(Profile::new(SINK), None).await.unwrap();
        let msg = msg.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < run {
                for _ in 0..15 {
                    channel.send_msg(msg.clone()).await.unwrap();
                }
                // The 16th waits for its reply: replies come in order.
                channel
                    .request(msg.clone(), Duration::from_secs(60))
                    .await
                    .unwrap();
                n += 16;
            }
            n
        }));
    }
    let mut messages = 0;
    for w in workers {
        messages += w.await.unwrap();
    }
    let rate = messages as f64 * BULK as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64;
    let _ = conn.close().await;
    stop.shutdown();
    rate
}
