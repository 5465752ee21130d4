//! `beep`: BEEP from the command line.
//!
//! * `beep serve --listen ADDR [--echo URI]... [--sink URI]...`
//! * `beep send ADDR --profile URI [--server-name NAME] [DATA | -]`
//! * `beep bench ADDR --profile URI --mode pingpong|pipeline|bulk [...]`
//! * `beep demo`
//!
//! Exit codes of `send`: 0 on RPY (or ANS/NUL), 1 on ERR or a refused
//! channel, 2 on a connection or protocol failure.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use beep_blocking::{
    CloseReason, Connection, Error, Listener, Options, ProfileHandler, Registry, Reply,
};
use beep_proto::Message;
use beep_proto::xml::Profile;
use clap::{Parser, Subcommand, ValueEnum};

mod verbose;

#[derive(Parser)]
#[command(
    name = "beep",
    version,
    about = "BEEP (RFC 3080/3081) from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve echo and sink profiles until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on (repeat for several); port 0 picks one.
        #[arg(long, required = true)]
        listen: Vec<String>,
        /// A profile URI that answers every MSG with the same payload.
        #[arg(long)]
        echo: Vec<String>,
        /// A profile URI that answers every MSG with an empty RPY.
        #[arg(long)]
        sink: Vec<String>,
        /// A fixed receive window per channel, in octets (default: the
        /// library's, 4096 octets growing to 1 MiB as the traffic needs).
        #[arg(long)]
        window: Option<u32>,
        /// End a connection idle (nothing moving, nothing under way) for
        /// this many seconds (default: never).
        #[arg(long)]
        idle_timeout: Option<f64>,
        /// Print each peer's frames to stderr (`PEER > ` sent, `PEER < `
        /// received), and its channels opening and closing (`PEER * `).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Open a channel, send one MSG, print the reply payload.
    Send {
        /// host:port of the listener.
        addr: String,
        /// The profile to start the channel with.
        #[arg(long)]
        profile: String,
        /// serverName for the start request.
        #[arg(long)]
        server_name: Option<String>,
        /// Seconds to wait for the connection and the reply.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print the frames exchanged to stderr (`> ` sent, `< `
        /// received), like `curl -v`.
        #[arg(short, long)]
        verbose: bool,
        /// The payload, or `-` to read it from stdin.
        data: Option<String>,
    },
    /// Measure an echo (pingpong, pipeline) or sink (bulk) profile.
    Bench {
        /// host:port of the listener.
        addr: String,
        /// The profile to use.
        #[arg(long)]
        profile: String,
        /// What to measure.
        #[arg(long, value_enum)]
        mode: Mode,
        /// Payload size in octets.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Channels used in parallel.
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// A fixed receive window per channel, in octets (default: the
        /// library's, 4096 octets growing to 1 MiB as the traffic needs).
        #[arg(long)]
        window: Option<u32>,
    },
    /// A listener and a client on loopback, showing a real exchange.
    Demo,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// One request at a time.
    Pingpong,
    /// Many requests in flight.
    Pipeline,
    /// One-way messages to a sink.
    Bulk,
}

/// `println!` that ends the process quietly when stdout is gone (`beep demo
/// | head -1`): the reader has what it wanted. `println!` panics instead.
macro_rules! say {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        // 141 is what a shell reports for a program ended by SIGPIPE.
        std::process::exit(141);
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            listen,
            echo,
            sink,
            window,
            idle_timeout,
            verbose,
        } => {
            if verbose {
                verbose::install(true);
            }
            let mut options = options(window);
            if let Some(secs) = idle_timeout {
                options.idle_timeout = secs_to_duration(secs);
            }
            report(serve(&listen, &echo, &sink, options))
        }
        Command::Send {
            addr,
            profile,
            server_name,
            timeout,
            verbose,
            data,
        } => send(&addr, &profile, server_name, timeout, verbose, data),
        Command::Bench {
            addr,
            profile,
            mode,
            size,
            channels,
            seconds,
            window,
        } => report(bench(
            &addr, &profile, mode, size, channels, seconds, window,
        )),
        Command::Demo => report(demo()),
    }
}

fn report(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("beep: {e}");
            ExitCode::from(2)
        }
    }
}

/// Seconds from the command line as a duration, without a panic: NaN and
/// negatives are zero, too many for a `Duration` (`inf`) the longest one.
fn secs_to_duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

/// The library's options, or with `--window`, fixed windows of that size.
fn options(window: Option<u32>) -> Options {
    let mut options = Options::default();
    if let Some(window) = window {
        options.config.receive_window = window;
        options.config.max_receive_window = window;
    }
    options
}

fn echo_handler() -> ProfileHandler {
    ProfileHandler::new(|channel, m| {
        let _ = channel.reply_rpy(m.msgno, m.message);
    })
}

fn sink_handler() -> ProfileHandler {
    ProfileHandler::new(|channel, m| {
        let _ = channel.reply_rpy(m.msgno, Message::default());
    })
}

fn serve(
    listen: &[String],
    echo: &[String],
    sink: &[String],
    options: Options,
) -> Result<(), Error> {
    let mut registry = Registry::new();
    for uri in echo {
        registry.register(uri.clone(), echo_handler());
    }
    for uri in sink {
        registry.register(uri.clone(), sink_handler());
    }
    let mut addrs = Vec::new();
    for a in listen {
        addrs.extend(std::net::ToSocketAddrs::to_socket_addrs(a.as_str())?);
    }
    let mut listener = Listener::bind_all(&addrs, registry, options)?;
    // Why a peer was dropped (a violation, a message above the limit, no
    // greeting in time) is said on stderr; releases and our own shutdown
    // are not news.
    listener.on_connection_end(|peer, reason| {
        if matches!(reason, CloseReason::Lost(_) | CloseReason::Violation(_)) {
            eprintln!("beep: {peer}: {reason}");
        }
    });
    let handle = listener.shutdown_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            handle.shutdown();
        }
    });
    let mut out = std::io::stdout().lock();
    for addr in listener.local_addrs() {
        writeln!(out, "listening on {addr}")?;
    }
    out.flush()?;
    drop(out);
    listener.serve()
}

fn send(
    addr: &str,
    profile: &str,
    server_name: Option<String>,
    timeout: f64,
    verbose: bool,
    data: Option<String>,
) -> ExitCode {
    let timeout = secs_to_duration(timeout).max(Duration::from_millis(1));
    let payload = match data.as_deref() {
        Some("-") => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("beep: reading stdin: {e}");
                return ExitCode::from(2);
            }
            buf
        }
        Some(text) => text.as_bytes().to_vec(),
        None => Vec::new(),
    };
    // The one --timeout bounds every wait of the script: connecting, the
    // channel start, the reply and the release.
    let options = Options {
        connect_timeout: timeout,
        channel_timeout: timeout,
        release_timeout: timeout,
        ..Options::default()
    };
    if verbose {
        verbose::install(false);
    }
    let conn = match Connection::connect(addr, options) {
        Ok(conn) => conn,
        Err(e) => return failure(&e),
    };
    let channel = match conn.open_channel(Profile::new(profile), server_name) {
        Ok(channel) => channel,
        Err(e) => return failure(&e),
    };
    let reply = channel.request(Message::new(payload), timeout);
    let code = match reply {
        Ok(Reply::Rpy(m)) => print_body(m.body()),
        Ok(Reply::Answers(answers)) => answers
            .iter()
            .map(|(_, m)| print_body(m.body()))
            .find(|c| *c != ExitCode::SUCCESS)
            .unwrap_or(ExitCode::SUCCESS),
        Ok(Reply::Err(m)) => {
            eprintln!("beep: ERR: {}", String::from_utf8_lossy(m.body()));
            ExitCode::from(1)
        }
        Err(e) => failure(&e),
    };
    let _ = conn.close();
    code
}

fn print_body(body: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(body).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("beep: writing stdout: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exit 1 for the peer's refusal, 2 for anything else.
fn failure(e: &Error) -> ExitCode {
    match e {
        Error::Refused { code, text } => {
            eprintln!("beep: refused: {code} {text}");
            ExitCode::from(1)
        }
        other => {
            eprintln!("beep: {other}");
            ExitCode::from(2)
        }
    }
}

fn bench(
    addr: &str,
    profile: &str,
    mode: Mode,
    size: usize,
    channels: usize,
    seconds: f64,
    window: Option<u32>,
) -> Result<(), Error> {
    let conn = Connection::connect(addr, options(window))?;
    let payload = Message::new(vec![b'x'; size]);
    // Too long for a deadline (`--seconds inf`): runs until interrupted.
    let deadline = Instant::now().checked_add(secs_to_duration(seconds));
    let messages = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..channels.max(1))
        .map(|_| {
            let channel = conn.open_channel(Profile::new(profile), None)?;
            let (payload, messages) = (payload.clone(), messages.clone());
            Ok(std::thread::spawn(move || -> Result<(), Error> {
                let timeout = Duration::from_secs(30);
                while deadline.is_none_or(|deadline| Instant::now() < deadline) {
                    match mode {
                        Mode::Pingpong => {
                            channel.request(payload.clone(), timeout)?;
                            messages.fetch_add(1, Ordering::Relaxed);
                        }
                        Mode::Pipeline | Mode::Bulk => {
                            // A batch in flight, then wait for the last reply:
                            // replies arrive in order (RFC 3080 2.6.1).
                            for _ in 0..255 {
                                channel.send_msg(payload.clone())?;
                            }
                            channel.request(payload.clone(), timeout)?;
                            messages.fetch_add(256, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            }))
        })
        .collect::<Result<_, Error>>()?;
    for w in workers {
        w.join()
            .map_err(|_| std::io::Error::other("a bench thread panicked"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = messages.load(Ordering::Relaxed) as f64;
    say!(
        "{:.0} messages/s, {:.1} MB/s ({} octets, {} channel(s), {:.1} s)",
        count / elapsed,
        count * size as f64 / elapsed / 1e6,
        size,
        channels.max(1),
        elapsed
    );
    let _ = conn.close();
    Ok(())
}

fn demo() -> Result<(), Error> {
    const ECHO: &str = "http://example.org/beep/echo";
    const COUNT: &str = "http://example.org/beep/count";
    let mut registry = Registry::new();
    registry.register(ECHO, echo_handler());
    registry.register(
        COUNT,
        ProfileHandler::new(|channel, m| {
            for word in ["one", "two", "three"] {
                let _ = channel.reply_ans(m.msgno, Message::new(word));
            }
            let _ = channel.reply_nul(m.msgno);
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default())?;
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let server = std::thread::spawn(move || listener.serve());
    say!("listener: serving {ECHO} and {COUNT} on {addr}");

    let conn = Connection::connect(addr, Options::default())?;
    say!(
        "client:   connected; greeting offers {:?}",
        conn.peer_greeting().profiles
    );
    conn.on_close(|reason| say!("client:   connection closed ({reason})"));

    let echo = conn.open_channel(Profile::new(ECHO), Some("localhost".into()))?;
    say!("client:   channel {} started with {ECHO}", echo.number());
    let reply = echo.request(Message::new("hello, BEEP"), Duration::from_secs(5))?;
    if let Reply::Rpy(m) = reply {
        say!(
            "client:   MSG \"hello, BEEP\" -> RPY {:?}",
            String::from_utf8_lossy(m.body())
        );
    }

    let count = conn.open_channel(Profile::new(COUNT), None)?;
    say!("client:   channel {} started with {COUNT}", count.number());
    if let Reply::Answers(answers) = count.request(Message::new("count"), Duration::from_secs(5))? {
        for (ansno, m) in &answers {
            say!(
                "client:   ANS {ansno} {:?}",
                String::from_utf8_lossy(m.body())
            );
        }
        say!("client:   NUL (end of the {} answers)", answers.len());
    }

    echo.close()?;
    say!("client:   channel {} closed", echo.number());
    conn.close()?;
    say!("client:   session released");
    stop.shutdown();
    server
        .join()
        .map_err(|_| std::io::Error::other("listener thread panicked"))??;
    say!("listener: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_of_seconds_becomes_a_duration_without_a_panic() {
        assert_eq!(secs_to_duration(1.5), Duration::from_millis(1500));
        assert_eq!(secs_to_duration(f64::INFINITY), Duration::MAX);
        assert_eq!(secs_to_duration(1e300), Duration::MAX);
        assert_eq!(secs_to_duration(-1.0), Duration::ZERO);
        assert_eq!(secs_to_duration(f64::NAN), Duration::ZERO);
    }
}
