//! One message sent in pieces as the application produces them, without
//! holding the whole message (LibVortex's payload feeder): the sending
//! counterpart of frame handlers. Each piece goes to the peer as soon as
//! its window allows, and feeding waits while the connection's unsent
//! output is above its limit, so a large upload costs about one piece of
//! memory.

use std::io::Write;
use std::time::Duration;

use beep_proto::dispatch::Done;
use beep_proto::{FeedId, Message, MsgNo};
use bytes::Bytes;

use crate::channel::Channel;
use crate::connection::{Waiter, wait};
use crate::{Error, Reply};

/// A message being sent in pieces: a MSG, RPY or ANS opened with
/// [`Channel::feed_msg`], [`Channel::feed_rpy`] or [`Channel::feed_ans`]
/// (a MSG whose reply the application awaits is a [`RequestFeeder`]).
/// It also takes the pieces as an [`std::io::Write`], so a file or a
/// compressor can write into it.
///
/// Frames of other messages on the channel wait while it is open (RFC
/// 3080 2.2.1.1: a message's frames are not interleaved with those of
/// other MSGs or replies on its channel, except other ANS to the same
/// MSG), so finish it promptly. Dropped unfinished, it ends the message
/// with what was fed: the peer cannot tell a truncated message from a
/// short one, so call [`Feeder::finish`].
///
/// ```no_run
/// use std::io::Write;
/// # fn run(channel: beep_blocking::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// let mut upload = channel.feed_msg(beep_proto::Message::default())?;
/// for part in ["a large ", "payload, ", "made as it goes"] {
///     upload.write_all(part.as_bytes())?;
/// }
/// upload.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Feeder {
    channel: Channel,
    feed: FeedId,
    finished: bool,
}

/// A MSG being sent in pieces whose reply the application awaits
/// ([`Channel::feed_request`]): feed it like a [`Feeder`], then
/// [`RequestFeeder::finish`] ends it and waits for the reply.
///
/// ```no_run
/// use std::time::Duration;
/// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
/// let mut request = channel.feed_request(beep_proto::Message::new("numbers: "))?;
/// for n in 0..1000 {
///     request.feed(format!("{n} "))?;
/// }
/// let reply = request.finish(Duration::from_secs(10))?;
/// # let _ = reply;
/// # Ok(()) }
/// ```
pub struct RequestFeeder {
    feeder: Feeder,
    reply: Option<Waiter>,
}

impl std::fmt::Debug for RequestFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestFeeder")
            .field("feed", &self.feeder.feed)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Starts a MSG sent in pieces (see [`Feeder`]); `start` is its
    /// beginning: the MIME headers (none for [`Message::verbatim`]) and
    /// any body already at hand. The reply goes to the channel's message
    /// handler, as for [`Channel::send_msg`].
    ///
    /// # Errors
    ///
    /// As [`Channel::send_msg`].
    pub fn feed_msg(&self, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_msg(number, start)?))?;
        Ok(Feeder::new(self, feed))
    }

    /// Starts a MSG sent in pieces whose reply
    /// [`RequestFeeder::finish`] waits for.
    ///
    /// # Errors
    ///
    /// As [`Channel::request`] before the wait.
    pub fn feed_request(&self, start: Message) -> Result<RequestFeeder, Error> {
        let number = self.number();
        let (notify, waiter) = Waiter::pair();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_request(number, start, notify)?))?;
        Ok(RequestFeeder {
            feeder: Feeder::new(self, feed),
            reply: Some(waiter),
        })
    }

    /// Starts a RPY to MSG `msgno` sent in pieces (a large reply the
    /// handler produces as it goes).
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel, m: beep_proto::IncomingMessage) -> Result<(), beep_blocking::Error> {
    /// let mut reply = channel.feed_rpy(m.msgno, beep_proto::Message::default())?;
    /// for row in 0..10_000 {
    ///     reply.feed(format!("row {row}\n"))?;
    /// }
    /// reply.finish()
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Channel::reply_rpy`].
    pub fn feed_rpy(&self, msgno: MsgNo, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_rpy(number, msgno, start)?))?;
        Ok(Feeder::new(self, feed))
    }

    /// Starts one ANS to MSG `msgno` sent in pieces; ANS to the same MSG
    /// may be fed side by side, and [`Channel::reply_nul`] ends the series
    /// once each is finished.
    ///
    /// # Errors
    ///
    /// As [`Channel::reply_ans`].
    pub fn feed_ans(&self, msgno: MsgNo, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_ans(number, msgno, start)?))?;
        Ok(Feeder::new(self, feed))
    }
}

impl Feeder {
    fn new(channel: &Channel, feed: FeedId) -> Self {
        Feeder {
            channel: channel.clone(),
            feed,
            finished: false,
        }
    }

    /// Which message this is (channel, msgno, ansno).
    pub fn id(&self) -> FeedId {
        self.feed
    }

    /// Appends `piece`, waiting while the connection's unsent output is
    /// above its limit. The piece is sent as it is, not copied.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the message cannot take more (the channel
    /// closed, or the peer already answered this MSG); the connection's
    /// end.
    pub fn feed(&mut self, piece: impl Into<Bytes>) -> Result<(), Error> {
        let (feed, piece) = (self.feed, piece.into());
        self.channel
            .shared()
            .with_room(|st| Ok(st.core.feed(feed, piece, false)?))
    }

    /// Ends the message: its last frame goes out after what was fed.
    ///
    /// # Errors
    ///
    /// As [`Feeder::feed`]; never for lack of room.
    pub fn finish(mut self) -> Result<(), Error> {
        self.end()
    }

    fn end(&mut self) -> Result<(), Error> {
        self.finished = true;
        let feed = self.feed;
        self.channel
            .shared()
            .with_session(|st| Ok(st.core.feed(feed, Bytes::new(), true)?))
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.end();
        }
    }
}

impl Write for Feeder {
    /// Feeds a copy of `buf` (whole: a piece is never refused in part).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(Bytes::copy_from_slice(buf))
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    /// Sends what waits in a batch now (see [`Connection::flush`]).
    ///
    /// [`Connection::flush`]: crate::Connection::flush
    fn flush(&mut self) -> std::io::Result<()> {
        self.channel.connection().flush();
        Ok(())
    }
}

impl RequestFeeder {
    /// Which MSG this is.
    pub fn id(&self) -> FeedId {
        self.feeder.id()
    }

    /// Appends `piece` (see [`Feeder::feed`]).
    ///
    /// # Errors
    ///
    /// As [`Feeder::feed`].
    pub fn feed(&mut self, piece: impl Into<Bytes>) -> Result<(), Error> {
        self.feeder.feed(piece)
    }

    /// Ends the MSG and waits at most `timeout` for the complete reply;
    /// after a timeout a late reply goes to the channel's handler.
    ///
    /// # Errors
    ///
    /// As [`Channel::request`].
    pub fn finish(mut self, timeout: Duration) -> Result<Reply, Error> {
        self.feeder.end()?;
        // Always there: taken only here, by value.
        let Some(waiter) = self.reply.take() else {
            return Err(Error::ChannelClosed);
        };
        let shared = self.feeder.channel.shared().clone();
        let result = wait(&shared, waiter, timeout);
        if matches!(result, Err(Error::Timeout)) {
            let feed = self.feeder.feed;
            shared
                .lock()
                .core
                .cancel_request(feed.channel(), feed.msgno());
        }
        result.and_then(Done::into_reply)
    }
}

impl Write for RequestFeeder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feeder.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.feeder.flush()
    }
}
