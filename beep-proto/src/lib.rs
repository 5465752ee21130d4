//! # beep-proto
//!
//! A Sans-IO implementation of BEEP, the Blocks Extensible Exchange
//! Protocol (RFC 3080) and its TCP mapping (RFC 3081): a pure state machine
//! with no sockets, threads, clocks or async. Bytes go in with
//! [`Session::handle_input`], bytes come out of [`Session::poll_transmit`],
//! and what happened comes out of [`Session::poll_event`]. Drivers such as
//! `beep-tokio` and `beep-blocking` move the bytes; every protocol rule
//! lives here.
//!
//! ```
//! use beep_proto::{Config, Event, Session};
//! let mut initiator = Session::initiator(Config::default());
//! let mut listener = Session::listener(Config { profiles: vec!["http://example.org/p".into()], ..Config::default() });
//! let bytes = listener.poll_transmit().unwrap();
//! initiator.handle_input(&bytes).unwrap();
//! let Some(Event::Greeting(greeting)) = initiator.poll_event() else { panic!() };
//! assert_eq!(greeting.profiles, vec!["http://example.org/p".to_string()]);
//! ```
//!
//! ## Features
//!
//! `tracing` (off by default; both drivers turn it on): the driver layer
//! ([`dispatch::Layer`]) reports what a connection does as `tracing`
//! events, recorded only when the application installs a subscriber.
//!
//! | target | level | event |
//! |---|---|---|
//! | `beep::frame` | TRACE | each frame header line, with `peer` and `dir` (`>` sent, `<` received); payloads never |
//! | `beep::channel` | DEBUG | a channel opened (`channel`, `profile`, `by` = `us` or `peer`) or closed |
//! | `beep::session` | DEBUG | the connection ended, with its `reason` |
//!
//! Frames are traced on connections that start while TRACE is enabled for
//! `beep::frame` (the header scanner must see each direction from its
//! first octet). The core itself ([`Session`]) records nothing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod budget;
mod channel;
pub mod config;
pub mod dispatch;
// The driver guide (issue 14): documentation only, with its doc tests.
#[doc = include_str!("guide.md")]
pub mod driver_guide {}
pub mod error;
pub mod event;
mod flow;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod idmap;
pub mod mime;
pub mod numbers;
mod pieces;
pub mod reply_code;
pub mod sasl;
pub mod session;
pub mod tls;
mod trace;
pub mod xml;

pub use budget::SharedBudget;
/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) is in this crate's API.
pub use bytes;
pub use config::Config;
pub use error::{ProtocolError, UsageError};
pub use event::{
    Event, IncomingFrame, IncomingMessage, MessageKind, SessionEnd, StartRequest, TlsRequest,
};
pub use mime::Message;
pub use numbers::{AnsNo, MsgNo};
pub use reply_code::ReplyCode;
pub use session::{FeedId, Role, Session};
