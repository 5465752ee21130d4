//! The `beep` tool driven as a subprocess, the way scripts use it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BEEP: &str = env!("CARGO_BIN_EXE_beep");
const ECHO: &str = "http://example.org/beep/echo";
const SINK: &str = "http://example.org/beep/sink";

/// `beep serve` on an ephemeral port, stopped with SIGTERM when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start() -> Serve {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Serve {
        let mut child = Command::new(BEEP)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--echo",
                ECHO,
                "--sink",
                SINK,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("beep serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(!addr.ends_with(":0"), "the real port is printed");
        Serve { child, addr }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "beep serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(BEEP)
        .arg("send")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn send_prints_the_reply_and_exits_zero() {
    let serve = Serve::start();
    let out = send(
        &[&serve.addr, "--profile", ECHO, "hello from a script"],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from a script");
    let out = send(&[&serve.addr, "--profile", SINK, "ignored"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[test]
fn send_reads_stdin_with_dash() {
    let serve = Serve::start();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
    let out = send(
        &[
            &serve.addr,
            "--profile",
            ECHO,
            "--server-name",
            "localhost",
            "-",
        ],
        Some(&data),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
}

#[test]
fn refused_channel_exits_one_with_the_code() {
    let serve = Serve::start();
    let out = send(
        &[&serve.addr, "--profile", "http://example.org/nope", "x"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("550"), "{stderr}");
}

#[test]
fn connection_failure_exits_two_with_a_reason() {
    // A port nobody listens on: bind one, then free it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = send(&[&addr, "--profile", ECHO, "--timeout", "2", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let mut serve = Serve::start();
    let out = send(&[&serve.addr, "--profile", ECHO, "x"], None);
    assert_eq!(out.status.code(), Some(0));
    let status = serve.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn demo_shows_a_whole_exchange() {
    let out = Command::new(BEEP).arg("demo").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for step in [
        "greeting offers",
        "started with",
        "RPY \"hello, BEEP\"",
        "ANS 2",
        "NUL",
        "closed",
        "session released",
        "TLS active",
        "RPY \"hello over TLS\"",
        "TLS session released",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
}

/// A certificate for 127.0.0.1 signed by a CA of this test, written to a
/// directory of its own: (directory, CA file, chain file, key file).
fn tls_files(tag: &str) -> (std::path::PathBuf, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("beep-tool-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("beep tool test CA {tag}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("chain.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let (ca, chain, key) = (path("ca.pem"), path("chain.pem"), path("key.pem"));
    (dir, ca, chain, key)
}

/// RFC 3080 3.1: `serve --tls-cert/--tls-key` and `send --tls --ca`: the
/// echo goes over TLS, verified against the CA; `--insecure` skips the
/// verification; without `--ca` the system's CAs do not know this one
/// and the send fails (exit 2) saying why.
#[test]
fn serve_and_send_over_tls() {
    let (dir, ca, chain, key) = tls_files("send");
    let _serve_dir = Cleanup(dir);
    let mut serve = Serve::start_with(&["--tls-cert", &chain, "--tls-key", &key]);
    let out = send(
        &[
            &serve.addr,
            "--profile",
            ECHO,
            "--tls",
            "--ca",
            &ca,
            "secret",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"secret");
    let out = send(
        &[&serve.addr, "--profile", ECHO, "--tls", "--insecure", "x"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&[&serve.addr, "--profile", ECHO, "--tls", "x"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS") && stderr.contains("untrusted"),
        "{stderr}"
    );
    assert!(serve.terminate().success());
}

/// `serve --require-tls`: a plain start is refused with 538 (exit 1).
#[test]
fn serve_require_tls_refuses_plain_channels() {
    let (dir, _ca, chain, key) = tls_files("require");
    let _serve_dir = Cleanup(dir);
    let mut serve = Serve::start_with(&["--tls-cert", &chain, "--tls-key", &key, "--require-tls"]);
    let out = send(&[&serve.addr, "--profile", ECHO, "plain"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("538"));
    let out = send(
        &[&serve.addr, "--profile", ECHO, "--tls", "--insecure", "ok"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ok");
    assert!(serve.terminate().success());
}

/// RFC 3080 4.1: `serve --sasl-user` (two users) and `send --sasl`: each
/// of PLAIN, CRAM-MD5, DIGEST-MD5 and SCRAM-SHA-256 authenticates either
/// user before the echo; a wrong password exits 1 with the refusal, 535.
#[test]
fn serve_and_send_with_sasl() {
    let mut serve = Serve::start_with(&[
        "--sasl-user",
        "bob:secret",
        "--sasl-user",
        "alice:won:der:land",
    ]);
    for (mech, user, password) in [
        ("PLAIN", "bob", "secret"),
        ("CRAM-MD5", "alice", "won:der:land"),
        ("DIGEST-MD5", "bob", "secret"),
        ("SCRAM-SHA-256", "alice", "won:der:land"),
        ("scram-sha-256", "bob", "secret"),
    ] {
        let out = send(
            &[
                &serve.addr,
                "--profile",
                ECHO,
                "--sasl",
                mech,
                "--user",
                user,
                "--password",
                password,
                "authenticated",
            ],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mech}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"authenticated", "{mech}");
    }
    for (mech, user) in [
        ("PLAIN", "bob"),
        ("SCRAM-SHA-256", "alice"),
        ("CRAM-MD5", "eve"),
    ] {
        let out = send(
            &[
                &serve.addr,
                "--profile",
                ECHO,
                "--sasl",
                mech,
                "--user",
                user,
                "--password",
                "wrong",
                "x",
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mech}: {stderr}");
        assert!(stderr.contains("refused: 535"), "{mech}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    // A password mechanism without a password is not even tried.
    let out = send(
        &[
            &serve.addr,
            "--profile",
            ECHO,
            "--sasl",
            "PLAIN",
            "--user",
            "bob",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));
    assert!(serve.terminate().success());
}

/// `serve --require-auth`: a send without `--sasl` is refused with 530
/// (exit 1); with it, the echo is served; so is the sink.
#[test]
fn serve_require_auth_refuses_unauthenticated_channels() {
    let mut serve = Serve::start_with(&["--sasl-user", "bob:secret", "--require-auth"]);
    let out = send(&[&serve.addr, "--profile", ECHO, "anonymous"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("530"), "{stderr}");
    for (profile, expected) in [(ECHO, &b"let me in"[..]), (SINK, &b""[..])] {
        let out = send(
            &[
                &serve.addr,
                "--profile",
                profile,
                "--sasl",
                "SCRAM-SHA-256",
                "--user",
                "bob",
                "--password",
                "secret",
                "let me in",
            ],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, expected);
    }
    assert!(serve.terminate().success());
}

/// `send --tls --sasl PLAIN`: TLS first, then the password, encrypted;
/// and `--sasl SCRAM-SHA-256-PLUS`, bound to that TLS session (RFC 9266),
/// which without `--tls` is refused before anything is sent.
#[test]
fn send_authenticates_after_tls() {
    let (dir, ca, chain, key) = tls_files("sasl");
    let _serve_dir = Cleanup(dir);
    let mut serve = Serve::start_with(&[
        "--tls-cert",
        &chain,
        "--tls-key",
        &key,
        "--sasl-user",
        "bob:secret",
        "--require-auth",
    ]);
    let out = send(
        &[
            &serve.addr,
            "--profile",
            ECHO,
            "--tls",
            "--ca",
            &ca,
            "--sasl",
            "PLAIN",
            "--user",
            "bob",
            "--password",
            "secret",
            "over TLS",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"over TLS");
    let plus = |tls: &[&str]| {
        let mut args = vec![serve.addr.as_str(), "--profile", ECHO];
        args.extend_from_slice(tls);
        args.extend_from_slice(&[
            "--sasl",
            "SCRAM-SHA-256-PLUS",
            "--user",
            "bob",
            "--password",
            "secret",
            "bound",
        ]);
        send(&args, None)
    };
    let out = plus(&["--tls", "--ca", &ca]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.stdout, b"bound");
    let out = plus(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("RFC 9266"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(serve.terminate().success());
}

/// Removes a test's directory when dropped.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn demo_into_a_pipe_closed_early_ends_quietly() {
    // `beep demo | head -1`: the reader leaves after one line.
    let mut child = Command::new(BEEP)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beep demo");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    assert!(!first.is_empty());
    // The pipe's reading end is closed now (the reader was dropped).
    let output = child.wait_with_output().expect("exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}

#[test]
fn send_verbose_prints_the_frames_to_stderr_and_only_the_reply_to_stdout() {
    let serve = Serve::start();
    let out = send(&[&serve.addr, "--profile", ECHO, "-v", "hi"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.stdout, b"hi");
    let lines: Vec<&str> = stderr.lines().collect();
    // Both greetings, the start and its reply, the MSG and its RPY (the
    // payload "\r\nhi" is 4 octets), and the release.
    for expected in [
        "> RPY 0 0 . 0 ",
        "< RPY 0 0 . 0 ",
        "> MSG 1 0 . 0 4",
        "< RPY 1 0 . 0 4",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no {expected:?} in:\n{stderr}"
        );
    }
    let sent = lines.iter().position(|l| l.starts_with("> MSG 1 0"));
    let answered = lines.iter().position(|l| l.starts_with("< RPY 1 0"));
    assert!(sent < answered, "{stderr}");
}

#[test]
fn serve_says_why_it_dropped_a_peer() {
    // A serve whose stderr we read: a peer that breaks the framing rules
    // is dropped, and the reason is printed, not swallowed.
    let mut child = Command::new(BEEP)
        .args(["serve", "--listen", "127.0.0.1:0", "--echo", ECHO])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let mut peer = std::net::TcpStream::connect(&addr).unwrap();
    peer.write_all(b"this is not a frame header\r\n").unwrap();
    // The listener closes it (a violation ends the session at once).
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut peer, &mut sink);
    send_sigterm(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("protocol violation"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:"), "names the peer: {stderr}");
}

/// Asks `child` to stop as SIGTERM would (`kill -TERM`).
fn send_sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn serve_verbose_prints_each_peers_frames_and_channels_to_stderr() {
    let mut child = Command::new(BEEP)
        .args(["serve", "--listen", "127.0.0.1:0", "--echo", ECHO, "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let out = send(&[&addr, "--profile", ECHO, "hi"], None);
    assert_eq!(out.stdout, b"hi");
    send_sigterm(&child);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    // Each line names the client (127.0.0.1:PORT), then what happened:
    // its MSG on channel 1 came in, our RPY went out, after the channel
    // had opened for the echo profile.
    let find = |what: &str| {
        lines
            .iter()
            .position(|l| l.starts_with("127.0.0.1:") && l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in:\n{stderr}"))
    };
    let opened = find(&format!(
        "* channel opened channel=1 profile={ECHO} by=peer"
    ));
    let received = find(" < MSG 1 0 . 0 4");
    let answered = find(" > RPY 1 0 . 0 4");
    assert!(opened < received && received < answered, "{stderr}");
    find("* connection ended reason=released by agreement");
}
