//! One message sent in pieces as the application produces them, without
//! holding the whole message (LibVortex's payload feeder): the sending
//! counterpart of frame handlers. Each piece goes to the peer as soon as
//! its window allows, and feeding waits while the connection's unsent
//! output is above its limit, so a large upload costs about one piece of
//! memory.

use std::time::Duration;

use beep_proto::dispatch::{Done, Notify};
use beep_proto::{FeedId, Message, MsgNo};
use bytes::Bytes;
use futures_channel::oneshot;

use crate::channel::{Channel, Pending};
use crate::shared::Wake;
use crate::{Error, Reply};

/// A message being sent in pieces: a MSG, RPY or ANS opened with
/// [`Channel::feed_msg`], [`Channel::feed_rpy`] or [`Channel::feed_ans`]
/// (a MSG whose reply the application awaits is a [`RequestFeeder`]).
///
/// Frames of other messages on the channel wait while it is open (RFC
/// 3080 2.2.1.1: a message's frames are not interleaved with those of
/// other MSGs or replies on its channel, except other ANS to the same
/// MSG), so finish it promptly. Dropped unfinished, it ends the message
/// with what was fed: the peer cannot tell a truncated message from a
/// short one, so call [`Feeder::finish`].
///
/// ```no_run
/// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
/// let mut upload = channel.feed_msg(beep_proto::Message::default()).await?;
/// for part in ["a large ", "payload, ", "made as it goes"] {
///     upload.feed(part).await?;
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
/// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
/// let mut request = channel.feed_request(beep_proto::Message::new("numbers: ")).await?;
/// for n in 0..1000 {
///     request.feed(format!("{n} ")).await?;
/// }
/// let reply = request.finish(Duration::from_secs(10)).await?;
/// # let _ = reply;
/// # Ok(()) }
/// ```
pub struct RequestFeeder {
    feeder: Feeder,
    reply: Option<oneshot::Receiver<Result<Done, Error>>>,
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
    pub async fn feed_msg(&self, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_msg(number, start)?))
            .await?;
        Ok(Feeder::new(self, feed))
    }

    /// Starts a MSG sent in pieces whose reply
    /// [`RequestFeeder::finish`] waits for.
    ///
    /// # Errors
    ///
    /// As [`Channel::request`] before the wait.
    pub async fn feed_request(&self, start: Message) -> Result<RequestFeeder, Error> {
        let number = self.number();
        let (tx, rx): (Wake, _) = oneshot::channel();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_request(number, start, Notify::Wait(tx))?))
            .await?;
        Ok(RequestFeeder {
            feeder: Feeder::new(self, feed),
            reply: Some(rx),
        })
    }

    /// Starts a RPY to MSG `msgno` sent in pieces (a large reply the
    /// handler produces as it goes).
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, m: beep_proto::IncomingMessage) -> Result<(), beep_tokio::Error> {
    /// let mut reply = channel.feed_rpy(m.msgno, beep_proto::Message::default()).await?;
    /// for row in 0..10_000 {
    ///     reply.feed(format!("row {row}\n")).await?;
    /// }
    /// reply.finish()
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Channel::reply_rpy`].
    pub async fn feed_rpy(&self, msgno: MsgNo, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_rpy(number, msgno, start)?))
            .await?;
        Ok(Feeder::new(self, feed))
    }

    /// Starts one ANS to MSG `msgno` sent in pieces; ANS to the same MSG
    /// may be fed side by side, and [`Channel::reply_nul`] ends the series
    /// once each is finished.
    ///
    /// # Errors
    ///
    /// As [`Channel::reply_ans`].
    pub async fn feed_ans(&self, msgno: MsgNo, start: Message) -> Result<Feeder, Error> {
        let number = self.number();
        let feed = self
            .shared()
            .with_room(|st| Ok(st.core.open_ans(number, msgno, start)?))
            .await?;
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
    pub async fn feed(&mut self, piece: impl Into<Bytes>) -> Result<(), Error> {
        let (feed, piece) = (self.feed, piece.into());
        self.channel
            .shared()
            .with_room(|st| Ok(st.core.feed(feed, piece, false)?))
            .await
    }

    /// Ends the message: its last frame goes out after what was fed (at
    /// once: ending never waits for room).
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
    pub async fn feed(&mut self, piece: impl Into<Bytes>) -> Result<(), Error> {
        self.feeder.feed(piece).await
    }

    /// Ends the MSG and waits at most `timeout` for the complete reply;
    /// after a timeout, or if this future is dropped, a late reply goes
    /// to the channel's handler.
    ///
    /// # Errors
    ///
    /// As [`Channel::request`].
    pub async fn finish(mut self, timeout: Duration) -> Result<Reply, Error> {
        self.feeder.end()?;
        // Always there: taken only here, by value.
        let Some(rx) = self.reply.take() else {
            return Err(Error::ChannelClosed);
        };
        let feed = self.feeder.feed;
        let shared = self.feeder.channel.shared();
        let mut pending = Pending::new(shared, feed.channel(), feed.msgno());
        let result = shared.wait(rx, timeout).await;
        pending.armed = matches!(result, Err(Error::Timeout));
        result.and_then(Done::into_reply)
    }
}
