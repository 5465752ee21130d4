//! What can go wrong on a connection.

use std::sync::Arc;

use beep_proto::dispatch::Failure;
use beep_proto::{ProtocolError, ReplyCode, UsageError};
use thiserror::Error;

/// An error of a connection, channel or listener call.
///
/// ```
/// use beep_tokio::Error;
/// let e = Error::Timeout;
/// assert_eq!(e.to_string(), "timed out waiting for the peer");
/// ```
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The peer broke the protocol; the connection is closed.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The call does not fit the session's state.
    #[error("{0}")]
    Usage(#[from] UsageError),
    /// The peer refused: a channel start, a close, or the session itself.
    #[error("refused by the peer: {code} {text}")]
    Refused {
        /// The peer's reply code.
        code: ReplyCode,
        /// The peer's diagnostic.
        text: String,
    },
    /// The channel closed before the reply came.
    #[error("the channel closed before the reply came")]
    ChannelClosed,
    /// The answers to a request grew beyond the message-size limit
    /// ([`Config::max_message_size`](beep_proto::Config::max_message_size))
    /// before their NUL; later ones go to the channel's handler.
    #[error("the reply exceeds {limit} octets")]
    ReplyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The connection is closed (released, lost, or broken).
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    /// No async runtime was named in the options and none could be found
    /// (not inside a tokio runtime, and the `async-std` feature is off).
    #[error("no async runtime: call from inside tokio, or set Options::runtime")]
    NoRuntime,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

/// Why a connection ended, as reported once to close handlers and to every
/// call still waiting.
///
/// ```
/// assert_eq!(beep_tokio::CloseReason::Released.to_string(), "released by agreement");
/// ```
pub use beep_proto::dispatch::EndReason as CloseReason;

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(e) => Error::Refused {
                code: e.code,
                text: e.text,
            },
            Failure::ChannelClosed => Error::ChannelClosed,
            Failure::ReplyTooLarge { limit } => Error::ReplyTooLarge { limit },
            Failure::Ended(reason) => Error::Closed(reason),
        }
    }
}
