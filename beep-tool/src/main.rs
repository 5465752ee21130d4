//! `beep`: BEEP from the command line.
//!
//! * `beep serve --listen ADDR [--echo URI]... [--sink URI]...
//!   [--tls-cert FILE --tls-key FILE [--require-tls]]
//!   [--sasl-user USER:PASS... [--require-auth]]`
//! * `beep send ADDR --profile URI [--server-name NAME]
//!   [--tls [--ca FILE | --insecure]]
//!   [--sasl MECH [--user USER] [--password PASS]] [DATA | -]`
//! * `beep bench ADDR --profile URI --mode pingpong|pipeline|bulk [...]`
//! * `beep demo`
//!
//! SASL (RFC 3080 4.1): `serve --sasl-user` offers PLAIN, CRAM-MD5,
//! DIGEST-MD5 and SCRAM-SHA-256 to those users (and with
//! `--require-auth` serves its profiles only to a peer that
//! authenticated, refusing others with 530); `send --sasl` authenticates
//! after `--tls` and before the channel, with PLAIN, CRAM-MD5,
//! DIGEST-MD5, SCRAM-SHA-256 (`--user`, `--password`), ANONYMOUS
//! (`--user` is the trace) or EXTERNAL (`--user` is the identity to act
//! as, if any).
//!
//! Exit codes of `send`: 0 on RPY (or ANS/NUL), 1 on ERR, a refused
//! channel or a refused authentication (`refused: 535 ...`), 2 on a
//! connection or protocol failure.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use beep_blocking::{
    AuthAnswer, AuthNeed, AuthRequest, CloseReason, Connection, Error, Listener, Mechanism,
    Options, ProfileHandler, Registry, Reply, SaslClient,
};
use beep_proto::Message;
use beep_proto::dispatch::TlsAcceptor;
use beep_proto::tls::{TlsClient, TlsError, TlsServer};
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
        /// Offer TLS (RFC 3080 3.1) with this PEM certificate chain (leaf
        /// first).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of `--tls-cert`.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve nothing but TLS until a peer has started it.
        #[arg(long, requires = "tls_cert")]
        require_tls: bool,
        /// Offer SASL (RFC 3080 4.1: PLAIN, CRAM-MD5, DIGEST-MD5,
        /// SCRAM-SHA-256) to this user (repeat for several).
        #[arg(long, value_name = "USER:PASS", value_parser = parse_user)]
        sasl_user: Vec<(String, String)>,
        /// Serve the --echo and --sink profiles only to a peer that has
        /// authenticated (others are refused with 530).
        #[arg(long, requires = "sasl_user")]
        require_auth: bool,
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
        /// Start TLS (RFC 3080 3.1) before the channel, verifying the
        /// listener against the system's CAs (or `--ca`) for the
        /// `--server-name`, or the host of ADDR.
        #[arg(long)]
        tls: bool,
        /// Verify the listener against the CA certificates in this PEM
        /// file instead.
        #[arg(long, requires = "tls")]
        ca: Option<PathBuf>,
        /// Accept any listener certificate: no authentication at all, for
        /// tests only.
        #[arg(long, requires = "tls", conflicts_with = "ca")]
        insecure: bool,
        /// Authenticate with this SASL mechanism (RFC 3080 4.1) after
        /// `--tls` and before the channel.
        #[arg(long, value_enum, value_name = "MECH", ignore_case = true)]
        sasl: Option<SaslMech>,
        /// The user to authenticate as (ANONYMOUS: the trace; EXTERNAL:
        /// the identity to act as, if any).
        #[arg(long, requires = "sasl")]
        user: Option<String>,
        /// The user's password (PLAIN, CRAM-MD5, DIGEST-MD5,
        /// SCRAM-SHA-256).
        #[arg(long, requires = "sasl")]
        password: Option<String>,
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

/// The SASL mechanisms `send --sasl` speaks, by their IANA names.
#[derive(Clone, Copy, ValueEnum)]
enum SaslMech {
    /// PLAIN (RFC 4616): the password in the clear (use --tls).
    #[value(name = "PLAIN")]
    Plain,
    /// CRAM-MD5 (RFC 2195).
    #[value(name = "CRAM-MD5")]
    CramMd5,
    /// DIGEST-MD5 (RFC 2831).
    #[value(name = "DIGEST-MD5")]
    DigestMd5,
    /// SCRAM-SHA-256 (RFC 7677).
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM bound to the TLS session (RFC 9266);
    /// needs --tls (TLS 1.3).
    #[value(name = "SCRAM-SHA-256-PLUS")]
    ScramSha256Plus,
    /// ANONYMOUS (RFC 4505), --user as the trace.
    #[value(name = "ANONYMOUS")]
    Anonymous,
    /// EXTERNAL (RFC 4422): the identity TLS established.
    #[value(name = "EXTERNAL")]
    External,
}

/// What `send --sasl` authenticates with.
struct SaslChoice {
    mech: SaslMech,
    user: Option<String>,
    password: Option<String>,
}

impl SaslChoice {
    /// The client of the mechanism; the password mechanisms need both
    /// `--user` and `--password`.
    fn client(self, server_name: Option<&str>) -> Result<SaslClient, String> {
        let credentials = |user: Option<String>, password: Option<String>| match (user, password) {
            (Some(user), Some(password)) => Ok((user, password)),
            _ => Err("this SASL mechanism needs --user and --password".to_string()),
        };
        let client = match self.mech {
            SaslMech::Anonymous => SaslClient::anonymous(self.user.unwrap_or_default()),
            SaslMech::External => {
                SaslClient::external().with_authzid(self.user.unwrap_or_default())
            }
            mech => {
                let (user, password) = credentials(self.user, self.password)?;
                match mech {
                    SaslMech::Plain => SaslClient::plain(user, password),
                    SaslMech::CramMd5 => SaslClient::cram_md5(user, password),
                    SaslMech::DigestMd5 => SaslClient::digest_md5(user, password),
                    SaslMech::ScramSha256Plus => SaslClient::scram_sha256_plus(user, password),
                    _ => SaslClient::scram_sha256(user, password),
                }
            }
        };
        Ok(match server_name {
            Some(name) => client.with_server_name(name),
            None => client,
        })
    }
}

/// `USER:PASS` of `--sasl-user` (the password may contain `:`).
fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_string(), pass.to_string())),
        _ => Err("expected USER:PASS".to_string()),
    }
}

/// The mechanisms `serve --sasl-user` offers (SCRAM-SHA-256-PLUS only
/// over TLS 1.3: the session advertises it only there).
const SERVED_MECHANISMS: [Mechanism; 5] = [
    Mechanism::Plain,
    Mechanism::CramMd5,
    Mechanism::DigestMd5,
    Mechanism::ScramSha256,
    Mechanism::ScramSha256Plus,
];

/// `serve --sasl-user`'s decision: PLAIN's password must match the
/// user's; the other mechanisms get the user's password to check the
/// client's proof with. Unknown users are no such user.
fn decide(users: &[(String, String)], request: &AuthRequest) -> AuthAnswer {
    let stored = users
        .iter()
        .find(|(user, _)| Some(user.as_str()) == request.authcid.as_deref())
        .map(|(_, pass)| pass);
    match (request.need, stored) {
        (_, None) => AuthAnswer::NoSuchUser,
        (AuthNeed::Secret, Some(pass)) => AuthAnswer::Secret(pass.clone()),
        (AuthNeed::Decide, Some(pass)) if request.password.as_ref() == Some(pass) => {
            AuthAnswer::Accept
        }
        (AuthNeed::Decide, Some(_)) => AuthAnswer::Deny,
    }
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
            tls_cert,
            tls_key,
            require_tls,
            sasl_user,
            require_auth,
        } => {
            if verbose {
                verbose::install(true);
            }
            let mut options = options(window);
            if let Some(secs) = idle_timeout {
                options.idle_timeout = secs_to_duration(secs);
            }
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => match TlsServer::from_pem_files(cert, key) {
                    Ok(server) => Some((server, require_tls)),
                    Err(e) => return report(Err(tls_error(e))),
                },
                _ => None,
            };
            let sasl = (!sasl_user.is_empty()).then_some((sasl_user, require_auth));
            report(serve(&listen, &echo, &sink, tls, sasl, options))
        }
        Command::Send {
            addr,
            profile,
            server_name,
            timeout,
            verbose,
            tls,
            ca,
            insecure,
            sasl,
            user,
            password,
            data,
        } => {
            let tls = tls.then_some(TlsChoice { ca, insecure });
            let sasl = sasl.map(|mech| SaslChoice {
                mech,
                user,
                password,
            });
            send(
                &addr,
                &profile,
                server_name,
                timeout,
                verbose,
                Secure { tls, sasl },
                data,
            )
        }
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

/// A TLS configuration error as the tool's error (it says what was
/// wrong: a file, a key, a name).
fn tls_error(e: TlsError) -> Error {
    std::io::Error::other(e).into()
}

/// How `send --tls` verifies the listener.
struct TlsChoice {
    ca: Option<PathBuf>,
    insecure: bool,
}

impl TlsChoice {
    fn client(&self, name: &str) -> Result<TlsClient, Error> {
        let client = if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", ca.display())))?;
            TlsClient::with_ca_pem(&pem, name)
        } else if self.insecure {
            TlsClient::dangerous_accept_any_certificate(name)
        } else {
            TlsClient::with_system_roots(name)
        };
        client.map_err(tls_error)
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host: the name TLS
/// asks for when no `--server-name` is given.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
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
    tls: Option<(TlsServer, bool)>,
    sasl: Option<(Vec<(String, String)>, bool)>,
    options: Options,
) -> Result<(), Error> {
    let mut registry = Registry::new();
    let auth_only = sasl.as_ref().is_some_and(|(_, required)| *required);
    let profiles = echo
        .iter()
        .map(|uri| (uri, echo_handler()))
        .chain(sink.iter().map(|uri| (uri, sink_handler())));
    for (uri, handler) in profiles {
        if auth_only {
            registry.register_auth_only(uri.clone(), handler);
        } else {
            registry.register(uri.clone(), handler);
        }
    }
    if let Some((users, _)) = sasl {
        registry.set_sasl(&SERVED_MECHANISMS, move |request| decide(&users, request));
    }
    if let Some((server, required)) = tls {
        registry.set_tls(TlsAcceptor::new(server));
        registry.require_tls(required);
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

/// What `send` does before its channel: TLS, then SASL.
struct Secure {
    tls: Option<TlsChoice>,
    sasl: Option<SaslChoice>,
}

fn send(
    addr: &str,
    profile: &str,
    server_name: Option<String>,
    timeout: f64,
    verbose: bool,
    secure: Secure,
    data: Option<String>,
) -> ExitCode {
    let Secure { tls, sasl } = secure;
    let sasl = match sasl.map(|choice| choice.client(server_name.as_deref())) {
        Some(Err(e)) => {
            eprintln!("beep: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(client)) => Some(client),
        None => None,
    };
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
    if let Some(tls) = tls {
        let name = server_name.as_deref().unwrap_or_else(|| host_of(addr));
        let started = tls.client(name).and_then(|client| conn.start_tls(client));
        if let Err(e) = started {
            return failure(&e);
        }
    }
    if let Some(client) = sasl
        && let Err(e) = conn.start_sasl(client)
    {
        // A refusal leaves the session usable: release it politely.
        let code = failure(&e);
        let _ = conn.close();
        return code;
    }
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
    // TLS with a certificate made for this run (nothing secret on disk),
    // which the client pins.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .map_err(std::io::Error::other)?;
    let key = cert.signing_key.serialize_pem();
    let server =
        TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).map_err(tls_error)?;
    registry.set_tls(TlsAcceptor::new(server));
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default())?;
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let server = std::thread::spawn(move || listener.serve());
    say!("listener: serving {ECHO} and {COUNT} on {addr}, TLS offered");

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

    // A second session, secured: TLS first (RFC 3080 3.1), then the echo.
    let conn = Connection::connect(addr, Options::default())?;
    let pinned = TlsClient::pinned(cert.cert.der().clone(), "localhost").map_err(tls_error)?;
    let info = conn.start_tls(pinned)?;
    say!(
        "client:   TLS active ({:?}, {:?}), listener certificate as pinned",
        info.protocol_version
            .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        info.cipher_suite.unwrap_or(rustls::CipherSuite::Unknown(0)),
    );
    let echo = conn.open_channel(Profile::new(ECHO), None)?;
    let reply = echo.request(Message::new("hello over TLS"), Duration::from_secs(5))?;
    if let Reply::Rpy(m) = reply {
        say!(
            "client:   channel {} MSG \"hello over TLS\" -> RPY {:?}",
            echo.number(),
            String::from_utf8_lossy(m.body())
        );
    }
    conn.close()?;
    say!("client:   TLS session released");
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
    fn the_tls_name_is_the_host_of_the_address() {
        assert_eq!(host_of("example.org:10288"), "example.org");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:10288"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn sasl_users_are_user_colon_password() {
        assert_eq!(parse_user("bob:a:b"), Ok(("bob".into(), "a:b".into())));
        assert_eq!(parse_user("bob:"), Ok(("bob".into(), String::new())));
        assert!(parse_user(":secret").is_err());
        assert!(parse_user("bob").is_err());
    }

    #[test]
    fn any_number_of_seconds_becomes_a_duration_without_a_panic() {
        assert_eq!(secs_to_duration(1.5), Duration::from_millis(1500));
        assert_eq!(secs_to_duration(f64::INFINITY), Duration::MAX);
        assert_eq!(secs_to_duration(1e300), Duration::MAX);
        assert_eq!(secs_to_duration(-1.0), Duration::ZERO);
        assert_eq!(secs_to_duration(f64::NAN), Duration::ZERO);
    }
}
