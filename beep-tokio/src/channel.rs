//! A channel of a connection: requests, replies, handler, close.

use std::future::Future;
use std::time::Duration;

use beep_proto::dispatch::{Done, HandlerResult, Reply};
use beep_proto::{AnsNo, IncomingFrame, IncomingMessage, Message, MsgNo, ReplyCode};
use futures_channel::oneshot;

use crate::connection::Connection;
use crate::error::Error;
use crate::incoming::Incoming;
use crate::profile::{CloseDecision, CloseRequest, erase, erase_close};
use crate::shared::{Notify, Shared, State};

/// A channel (PyVortex `Channel`): cheap to clone, usable from any task.
///
/// Sending calls wait while the connection's unsent output is above
/// [`Options::max_queued_output`](crate::Options::max_queued_output), so a
/// peer that stops reading slows the sender down instead of growing memory.
/// Their `try_` twins are not async and never wait: they return
/// [`Error::QueueFull`] instead (for handlers that must not wait, e.g. two
/// peers streaming to each other from their handlers, whose windows only
/// open after a handler returns).
///
/// ```no_run
/// use std::time::Duration;
/// use beep_proto::{Message, xml::Profile};
/// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
/// let channel = conn.open_channel(Profile::new("http://example.org/beep/echo"), None).await?;
/// let reply = channel.request(Message::new("ping"), Duration::from_secs(5)).await?;
/// channel.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    conn: Connection,
    number: u32,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("number", &self.number)
            .field("peer", &self.conn.peer_addr())
            .finish()
    }
}

impl Channel {
    pub(crate) fn new(conn: Connection, number: u32) -> Self {
        Channel { conn, number }
    }

    /// The channel number.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) {
    /// assert_eq!(channel.number() % 2, 1, "the initiator's channels are odd");
    /// # }
    /// ```
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The connection this channel belongs to.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) {
    /// assert!(channel.connection().is_ok());
    /// # }
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The profile URI running on the channel, while it is open.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) {
    /// println!("{:?}", channel.profile());
    /// # }
    /// ```
    pub fn profile(&self) -> Option<String> {
        let st = self.conn.shared.lock();
        st.core
            .session()
            .channel_profile(self.number)
            .map(str::to_owned)
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.conn.shared
    }

    /// The content the peer piggybacked on its reply when it accepted this
    /// channel (e.g. a TLS `<proceed/>` or a SASL challenge), if any.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) {
    /// if let Some(content) = channel.start_reply() {
    ///     println!("the peer said {content:?} when it accepted");
    /// }
    /// # }
    /// ```
    pub fn start_reply(&self) -> Option<bytes::Bytes> {
        let st = self.conn.shared.lock();
        st.core.session().start_reply(self.number).cloned()
    }

    /// Sends a MSG; returns its msgno. The reply goes to the message
    /// handler (use [`Channel::request`] to await it instead).
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// let msgno = channel.send_msg(beep_proto::Message::new("fire and forget")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_msg(&self, message: Message) -> Result<MsgNo, Error> {
        let number = self.number;
        self.shared()
            .with_room(|st| Ok(st.core.send_msg(number, message)?))
            .await
    }

    /// Sends a MSG and waits (at most `timeout`) for its complete reply:
    /// RPY, ERR, or every ANS up to the NUL. If it times out or this future
    /// is dropped, a late reply goes to the message handler.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use beep_tokio::Reply;
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// match channel.request(beep_proto::Message::new("list"), Duration::from_secs(5)).await? {
    ///     Reply::Rpy(m) => println!("{:?}", m.body()),
    ///     Reply::Err(m) => eprintln!("error: {:?}", m.body()),
    ///     Reply::Answers(answers) => println!("{} answers", answers.len()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, message: Message, timeout: Duration) -> Result<Reply, Error> {
        let (tx, rx) = oneshot::channel();
        let msgno = self.request_notify(message, Notify::Wait(tx)).await?;
        let mut pending = Pending::new(self.shared(), self.number, msgno);
        let result = self.shared().wait(rx, timeout).await;
        pending.armed = matches!(result, Err(Error::Timeout));
        result.and_then(Done::into_reply)
    }

    /// Sends a MSG; `done` runs (on the dispatcher) with the complete reply
    /// or the error that ended the wait. Returns the msgno.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// channel.request_with(beep_proto::Message::new("ping"), |reply| {
    ///     println!("{reply:?}");
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn request_with(
        &self,
        message: Message,
        done: impl FnOnce(Result<Reply, Error>) + Send + 'static,
    ) -> Result<MsgNo, Error> {
        let notify = Notify::Call(Box::new(move |result| {
            done(result.and_then(Done::into_reply))
        }));
        self.request_notify(message, notify).await
    }

    async fn request_notify(&self, message: Message, notify: Notify) -> Result<MsgNo, Error> {
        let number = self.number;
        self.shared()
            .with_room(|st| Ok(st.core.request(number, message, notify)?))
            .await
    }

    /// Answers MSG `msgno` with a positive reply.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, m: beep_proto::IncomingMessage) -> Result<(), beep_tokio::Error> {
    /// channel.reply_rpy(m.msgno, m.message).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reply_rpy(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .with_room(|st| Ok(st.core.send_rpy(number, msgno, message)?))
            .await
    }

    /// Answers MSG `msgno` with a negative reply.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_tokio::Error> {
    /// channel.reply_err(msgno, beep_proto::Message::new("not found")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reply_err(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .with_room(|st| Ok(st.core.send_err(number, msgno, message)?))
            .await
    }

    /// Sends one answer to MSG `msgno`; returns its ansno. End the answers
    /// with [`Channel::reply_nul`].
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_tokio::Error> {
    /// for item in ["a", "b"] {
    ///     channel.reply_ans(msgno, beep_proto::Message::new(item)).await?;
    /// }
    /// channel.reply_nul(msgno).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reply_ans(&self, msgno: MsgNo, message: Message) -> Result<AnsNo, Error> {
        let number = self.number;
        self.shared()
            .with_room(|st| Ok(st.core.send_ans(number, msgno, message)?))
            .await
    }

    /// Like [`Channel::send_msg`], but never waits: with the connection's
    /// unsent output above the limit it returns [`Error::QueueFull`] and
    /// sends nothing.
    ///
    /// ```no_run
    /// use beep_tokio::Error;
    /// # fn run(channel: beep_tokio::Channel) -> Result<(), Error> {
    /// match channel.try_send_msg(beep_proto::Message::new("tick")) {
    ///     Ok(msgno) => println!("sent as {msgno}"),
    ///     Err(Error::QueueFull { queued, .. }) => println!("{queued} octets still unsent; later"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_send_msg(&self, message: Message) -> Result<MsgNo, Error> {
        let number = self.number;
        self.shared()
            .try_room(|st| Ok(st.core.send_msg(number, message)?))
    }

    /// Like [`Channel::reply_rpy`], but [`Error::QueueFull`] instead of
    /// waiting for room (the reply is not taken; send it again later).
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel, m: beep_proto::IncomingMessage) {
    /// if let Err(e) = channel.try_reply_rpy(m.msgno, m.message) {
    ///     eprintln!("not now: {e}");
    /// }
    /// # }
    /// ```
    pub fn try_reply_rpy(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .try_room(|st| Ok(st.core.send_rpy(number, msgno, message)?))
    }

    /// Like [`Channel::reply_err`], but [`Error::QueueFull`] instead of
    /// waiting for room.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_tokio::Error> {
    /// channel.try_reply_err(msgno, beep_proto::Message::new("busy"))?;
    /// # Ok(()) }
    /// ```
    pub fn try_reply_err(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .try_room(|st| Ok(st.core.send_err(number, msgno, message)?))
    }

    /// Like [`Channel::reply_ans`], but [`Error::QueueFull`] instead of
    /// waiting for room.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_tokio::Error> {
    /// let ansno = channel.try_reply_ans(msgno, beep_proto::Message::new("part"))?;
    /// # Ok(()) }
    /// ```
    pub fn try_reply_ans(&self, msgno: MsgNo, message: Message) -> Result<AnsNo, Error> {
        let number = self.number;
        self.shared()
            .try_room(|st| Ok(st.core.send_ans(number, msgno, message)?))
    }

    /// Changes how many octets the peer may send on this channel ahead of
    /// what the application has taken (LibVortex `set_window_size`). A
    /// larger window is advertised at once; a smaller one takes effect as
    /// the peer uses the credit already granted (RFC 3081 3.1.4). From
    /// 4096 to 2147483647.
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// channel.set_window(1 << 20)?; // bulk transfers on this channel
    /// # Ok(()) }
    /// ```
    pub fn set_window(&self, window: u32) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .with_session(|st| Ok(st.core.set_receive_window(number, window)?))
    }

    /// Ends the answers to MSG `msgno`. A NUL carries no payload, so it
    /// never waits for room.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_tokio::Error> {
    /// channel.reply_nul(msgno).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reply_nul(&self, msgno: MsgNo) -> Result<(), Error> {
        let number = self.number;
        self.shared()
            .with_session(|st| Ok(st.core.send_nul(number, msgno)?))
    }

    /// Sets the async handler for MSGs and for replies nobody waits for
    /// (PyVortex `set_frame_received`).
    ///
    /// ```no_run
    /// # fn run(channel: beep_tokio::Channel) {
    /// channel.set_message_handler(|channel, m| async move {
    ///     println!("{:?} on channel {}", m.kind, channel.number());
    /// });
    /// # }
    /// ```
    pub fn set_message_handler<F, Fut>(&self, handler: F)
    where
        F: Fn(Channel, IncomingMessage) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let handler = erase(handler);
        let st = self.conn.shared.lock();
        State::install(st, self.number, false, |h| &mut h.message, handler);
    }

    /// The channel's MSGs and the replies nobody awaits as a
    /// [`Stream`](futures_util::Stream), instead of a message handler (it
    /// replaces the one set). Each message's window goes back to the peer
    /// when the stream yields it, so a consumer that falls behind slows
    /// the peer down without blocking the connection's other channels.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// let mut incoming = channel.incoming();
    /// channel.send_msg(beep_proto::Message::new("subscribe")).await?;
    /// while let Some(event) = incoming.next().await {
    ///     println!("{:?}: {:?}", event.kind, event.message.body());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn incoming(&self) -> Incoming {
        let (incoming, handler) = Incoming::attach(self);
        // Closed already: nothing will come, and the queue ends at once
        // (its feed goes with the handler, outside the lock).
        let st = self.conn.shared.lock();
        State::install(st, self.number, true, |h| &mut h.message, handler);
        incoming
    }

    /// Switches the channel to frame delivery (PyVortex's frame-received
    /// handler without "complete frames"): from now on each frame goes to
    /// `handler` as it arrives, MSGs and replies alike, instead of whole
    /// messages to the message handler, so a message may be larger than
    /// [`Config::max_message_size`](beep_proto::Config::max_message_size)
    /// and memory. The frame's window goes back to the peer when the
    /// handler's future completes. Refused while a request on the channel
    /// waits for a whole reply or a message is half received; requests
    /// (which wait for whole replies) are refused afterwards: use
    /// `send_msg`.
    ///
    /// A message the peer had sent whole before the switch reaches the
    /// handler as one final frame. An error or a panic on a frame of a MSG
    /// answers that MSG with ERR at once, even with frames still to come
    /// (they reach the handler too; a reply after that fails). For MSGs
    /// the peer may send as soon as the channel is open,
    /// `ProfileHandler::on_frame` switches before any can arrive.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// channel.set_frame_handler(|_, frame| async move {
    ///     // The first frame starts with the MIME header block.
    ///     println!("{} octets of message {}", frame.payload.len(), frame.msgno);
    /// })?;
    /// channel.send_msg(beep_proto::Message::new("get big-file")).await?;
    /// # Ok(()) }
    /// ```
    pub fn set_frame_handler<F, Fut>(&self, handler: F) -> Result<(), Error>
    where
        F: Fn(Channel, IncomingFrame) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let handler = erase(handler);
        let mut st = self.conn.shared.lock();
        st.core.stream_frames(self.number)?;
        State::install(st, self.number, false, |h| &mut h.frame, handler);
        Ok(())
    }

    /// Sets the handler that decides on the peer's requests to close this
    /// channel (replacing the one set, e.g. by its profile): a channel the
    /// application opened has none, and agrees. The handler sees the
    /// peer's reply code and diagnostic ([`CloseRequest`], RFC 3080
    /// 2.3.1.3) and decides at once, returning a [`CloseDecision`] or a
    /// `bool` (`false` refuses with 550 "close refused"); a panic agrees.
    /// A channel that is closed already keeps none.
    ///
    /// ```no_run
    /// use beep_tokio::CloseDecision;
    /// use beep_proto::ReplyCode;
    /// # fn run(channel: beep_tokio::Channel) {
    /// channel.set_close_handler(|_channel, request| {
    ///     println!("the peer wants to close: {} {}", request.code, request.text);
    ///     CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "still in use".into())
    /// });
    /// # }
    /// ```
    pub fn set_close_handler<R: Into<CloseDecision>>(
        &self,
        handler: impl Fn(&Channel, &CloseRequest) -> R + Send + Sync + 'static,
    ) {
        let handler = erase_close(handler);
        // A closed channel has nothing to decide any more: no handler.
        let st = self.conn.shared.lock();
        State::install(st, self.number, true, |h| &mut h.close, handler);
    }

    /// Asks the peer to close the channel and waits (at most the connect
    /// timeout) for its decision; a refusal is [`Error::Refused`] and
    /// leaves the channel open.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
    /// channel.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        self.close_with(ReplyCode::SUCCESS, "").await
    }

    /// Like [`Channel::close`], with a reply code and a diagnostic for the
    /// peer (RFC 3080 2.3.1.3): its close handler sees them.
    ///
    /// ```no_run
    /// use beep_tokio::Error;
    /// use beep_proto::ReplyCode;
    /// # async fn run(channel: beep_tokio::Channel) -> Result<(), Error> {
    /// match channel.close_with(ReplyCode::SERVICE_NOT_AVAILABLE, "shutting down for maintenance").await {
    ///     Ok(()) => println!("closed"),
    ///     Err(Error::Refused { code, text }) => println!("the peer keeps it open: {code} {text}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn close_with(&self, code: ReplyCode, text: &str) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let number = self.number;
        self.shared()
            .with_session(|st| Ok(st.core.close_with(number, code, text, Notify::Wait(tx))?))?;
        let limit = self.shared().options.channel_timeout;
        self.shared().wait(rx, limit).await.map(drop)
    }
}

/// A request being awaited. If the wait ends without the reply (timeout,
/// or the future was dropped), the waiter is forgotten so that a late
/// reply goes to the channel's handler instead of nowhere.
pub(crate) struct Pending<'a> {
    shared: &'a Shared,
    channel: u32,
    msgno: MsgNo,
    pub(crate) armed: bool,
}

impl<'a> Pending<'a> {
    /// Armed: dropped as is, it cancels the request.
    pub(crate) fn new(shared: &'a Shared, channel: u32, msgno: MsgNo) -> Self {
        Pending {
            shared,
            channel,
            msgno,
            armed: true,
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .lock()
                .core
                .cancel_request(self.channel, self.msgno);
        }
    }
}
