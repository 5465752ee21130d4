//! What can go wrong on a connection.

use std::sync::Arc;

use beep_proto::{ProtocolError, ReplyCode, UsageError};
use thiserror::Error;

/// An error of a connection, channel or listener call.
///
/// ```
/// use beep_blocking::Error;
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
    /// The answers to a request grew beyond the message-size limit.
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
    /// A blocking call from the connection's own reader thread would wait
    /// for input only that thread can read.
    #[error("this call would wait forever on the connection's own I/O thread")]
    WouldDeadlock,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

/// Why a connection ended, as reported once to close handlers and to every
/// call still waiting.
pub use beep_proto::dispatch::EndReason as CloseReason;

impl From<beep_proto::dispatch::Failure> for Error {
    fn from(f: beep_proto::dispatch::Failure) -> Self {
        use beep_proto::dispatch::Failure;
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
