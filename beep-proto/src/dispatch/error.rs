//! The error of driver calls, shared by every driver so that code using
//! beep-blocking and beep-tokio handles one type.

use std::sync::Arc;

use thiserror::Error as ThisError;

use super::{EndReason, Failure};
use crate::error::{ProtocolError, UsageError};
use crate::reply_code::ReplyCode;

/// An error of a connection, channel or listener call of a driver.
///
/// ```
/// use beep_proto::dispatch::Error;
/// let e = Error::Timeout;
/// assert_eq!(e.to_string(), "timed out waiting for the peer");
/// ```
#[derive(Debug, Clone, ThisError)]
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
    /// ([`Config::max_message_size`](crate::Config::max_message_size))
    /// before their NUL; later ones go to the channel's handler.
    #[error("the reply exceeds {limit} octets")]
    ReplyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// A non-blocking send (`try_send_msg`, `try_reply_*`) found more
    /// unsent output than the connection's limit; the message was not
    /// taken. Try again once the peer has read (or use the waiting call).
    #[error("the outbound queue is full: {queued} octets unsent, limit {limit}")]
    QueueFull {
        /// Octets handed to the connection and not yet written.
        queued: usize,
        /// The connection's `max_queued_output`.
        limit: usize,
    },
    /// The connection is closed (released, lost, or broken).
    #[error("the connection is closed: {0}")]
    Closed(EndReason),
    /// TLS began (RFC 3080 3): every channel closed before the reply
    /// came.
    #[error("every channel closed for a tuning reset (TLS began)")]
    TuningReset,
    /// An async driver found no runtime to run on (name one in its
    /// options, or call from inside one).
    #[error("no async runtime: call from inside one, or name one in the options")]
    NoRuntime,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

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
            Failure::TuningReset => Error::TuningReset,
        }
    }
}
