//! What can go wrong on a connection: the error type shared by the drivers.

/// An error of a connection, channel or listener call (shared with the
/// other drivers, see [`beep_proto::dispatch::Error`]).
///
/// ```
/// use beep_blocking::Error;
/// let e = Error::Timeout;
/// assert_eq!(e.to_string(), "timed out waiting for the peer");
/// ```
pub use beep_proto::dispatch::Error;

/// Why a connection ended, as reported once to close handlers and to every
/// call still waiting.
///
/// ```
/// assert_eq!(beep_blocking::CloseReason::Released.to_string(), "released by agreement");
/// ```
pub use beep_proto::dispatch::EndReason as CloseReason;
