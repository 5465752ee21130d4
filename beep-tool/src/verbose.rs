//! `-v`: the frames exchanged, printed to stderr as they cross the socket,
//! like `curl -v` prints HTTP headers (`> ` sent, `< ` received; header
//! lines only, payloads are skipped).

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use beep_blocking::transport::Transport;
use beep_proto::frame::{DEFAULT_MAX_HEADER_LEN, Header, TRAILER, parse_header};

/// A TCP stream that prints the frame headers going each way.
pub struct Verbose {
    stream: TcpStream,
    sent: Mutex<FrameLog>,
    received: Mutex<FrameLog>,
}

impl Verbose {
    pub fn new(stream: TcpStream) -> Self {
        Verbose {
            stream,
            sent: Mutex::new(FrameLog::new("> ")),
            received: Mutex::new(FrameLog::new("< ")),
        }
    }

    fn log_written(&self, bufs: &[IoSlice<'_>], mut written: usize) {
        let mut log = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        for buf in bufs {
            if written == 0 {
                break;
            }
            let n = buf.len().min(written);
            print(log.feed(&buf[..n]));
            written -= n;
        }
    }
}

impl Transport for Verbose {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = Transport::read(&self.stream, buf)?;
        let mut log = self.received.lock().unwrap_or_else(|p| p.into_inner());
        print(log.feed(&buf[..n]));
        Ok(n)
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = Transport::write_vectored(&self.stream, bufs)?;
        self.log_written(bufs, n);
        Ok(n)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        let result = Transport::try_write_vectored(&self.stream, bufs)?;
        if let Ok(n) = &result {
            self.log_written(bufs, *n);
        }
        Some(result)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Transport::set_read_timeout(&self.stream, timeout)
    }

    fn shutdown(&self) {
        Transport::shutdown(&self.stream);
    }

    fn shutdown_write(&self) {
        Transport::shutdown_write(&self.stream);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Transport::peer_addr(&self.stream)
    }
}

/// One direction's bytes, cut into frames: prints each header line once
/// it is complete and skips the payload after it.
struct FrameLog {
    prefix: &'static str,
    pending: Vec<u8>,
    /// Payload and trailer octets still to skip.
    skip: usize,
    /// Stops after a line that does not parse (the session reports it).
    lost: bool,
}

impl FrameLog {
    fn new(prefix: &'static str) -> Self {
        FrameLog {
            prefix,
            pending: Vec::new(),
            skip: 0,
            lost: false,
        }
    }

    /// The header lines `bytes` completes, with their direction prefix.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() && !self.lost {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            // A header: gather it until its CRLF.
            let end = bytes.iter().position(|&b| b == b'\n').map(|i| i + 1);
            let take = end.unwrap_or(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if end.is_none() {
                if self.pending.len() > DEFAULT_MAX_HEADER_LEN {
                    self.lost = true;
                }
                return lines;
            }
            let line = std::mem::take(&mut self.pending);
            match parse_header(&line, DEFAULT_MAX_HEADER_LEN) {
                Ok(Some((header, _))) => {
                    let text = String::from_utf8_lossy(&line);
                    lines.push(format!("{}{}", self.prefix, text.trim_end()));
                    if let Header::Frame(h) = header {
                        self.skip = h.size as usize + TRAILER.len();
                    }
                }
                _ => {
                    let text = String::from_utf8_lossy(&line);
                    lines.push(format!("{}(not a frame header: {text:?})", self.prefix));
                    self.lost = true;
                }
            }
        }
        lines
    }
}

fn print(lines: Vec<String>) {
    for line in lines {
        eprintln!("{line}");
    }
}

/// Connects to `addr` (each resolved address in turn) within `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("the address resolved to nothing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_anywhere_are_cut_into_frames_and_payloads_skipped() {
        // The last frame's payload is "END" (3 octets), then its trailer.
        let wire = b"RPY 0 0 . 0 5\r\nhelloEND\r\nSEQ 0 5 4096\r\nMSG 1 0 * 0 3\r\nENDEND\r\n";
        for split in 0..=wire.len() {
            let mut log = FrameLog::new("> ");
            let mut lines = log.feed(&wire[..split]);
            lines.extend(log.feed(&wire[split..]));
            assert_eq!(
                lines,
                ["> RPY 0 0 . 0 5", "> SEQ 0 5 4096", "> MSG 1 0 * 0 3"],
                "split at {split}"
            );
            assert_eq!((log.skip, log.lost), (0, false), "split at {split}");
        }
    }
}
