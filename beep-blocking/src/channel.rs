//! A channel of a connection: requests, replies, handler, close.

use std::sync::Arc;
use std::time::Duration;

use beep_proto::dispatch::{Done, HandlerResult, Reply};
use beep_proto::{AnsNo, IncomingFrame, IncomingMessage, Message, MsgNo, ReplyCode};

use crate::connection::{Connection, Notify, Shared, State, Waiter, wait};
use crate::error::Error;
use crate::incoming::Incoming;
use crate::profile::{CloseDecision, CloseRequest, erase, erase_close};

/// A channel (PyVortex `Channel`): cheap to clone, usable from any thread.
///
/// Sending calls wait while the connection's unsent output is above
/// [`Options::max_queued_output`](crate::Options::max_queued_output), so a
/// peer that stops reading slows the sender down instead of growing memory.
/// Their `try_` twins never wait: they return [`Error::QueueFull`] instead
/// (for handlers that must not block, e.g. two peers streaming to each
/// other from their handlers, whose windows only open after a handler
/// returns).
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

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.conn.shared
    }

    /// The channel number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The connection this channel belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The profile URI running on the channel, while it is open.
    pub fn profile(&self) -> Option<String> {
        let st = self.conn.shared.lock();
        st.core
            .session()
            .channel_profile(self.number)
            .map(str::to_owned)
    }

    /// The content the peer piggybacked on its reply when it accepted this
    /// channel (e.g. a TLS `<proceed/>` or a SASL challenge), if any.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel) {
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
    /// handler (use [`Channel::request`] to wait for it instead).
    pub fn send_msg(&self, message: Message) -> Result<MsgNo, Error> {
        self.conn
            .shared
            .with_room(|st| Ok(st.core.send_msg(self.number, message)?))
    }

    /// Sends a MSG and waits for its complete reply: RPY, ERR, or every ANS
    /// up to the NUL.
    pub fn request(&self, message: Message, timeout: Duration) -> Result<Reply, Error> {
        let (notify, waiter) = Waiter::pair();
        let msgno = self.request_notify(message, notify)?;
        let result = wait(&self.conn.shared, waiter, timeout);
        if matches!(result, Err(Error::Timeout)) {
            // Nobody waits any more: a late reply goes to the handler.
            self.conn
                .shared
                .lock()
                .core
                .cancel_request(self.number, msgno);
        }
        result.and_then(Done::into_reply)
    }

    /// Sends a MSG; `done` runs with the complete reply (or the error that
    /// ended the wait). Returns the msgno.
    pub fn request_with(
        &self,
        message: Message,
        done: impl FnOnce(Result<Reply, Error>) + Send + 'static,
    ) -> Result<MsgNo, Error> {
        let notify = Notify::Call(Box::new(move |result| {
            done(result.and_then(Done::into_reply))
        }));
        self.request_notify(message, notify)
    }

    fn request_notify(&self, message: Message, notify: Notify) -> Result<MsgNo, Error> {
        self.conn
            .shared
            .with_room(|st| Ok(st.core.request(self.number, message, notify)?))
    }

    /// Answers MSG `msgno` with a positive reply.
    pub fn reply_rpy(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        self.conn
            .shared
            .with_room(|st| Ok(st.core.send_rpy(self.number, msgno, message)?))
    }

    /// Answers MSG `msgno` with a negative reply.
    pub fn reply_err(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        self.conn
            .shared
            .with_room(|st| Ok(st.core.send_err(self.number, msgno, message)?))
    }

    /// Sends one answer to MSG `msgno`; returns its ansno.
    pub fn reply_ans(&self, msgno: MsgNo, message: Message) -> Result<AnsNo, Error> {
        self.conn
            .shared
            .with_room(|st| Ok(st.core.send_ans(self.number, msgno, message)?))
    }

    /// Like [`Channel::send_msg`], but never waits: with the connection's
    /// unsent output above the limit it returns [`Error::QueueFull`] and
    /// sends nothing.
    ///
    /// ```no_run
    /// use beep_blocking::Error;
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), Error> {
    /// match channel.try_send_msg(beep_proto::Message::new("tick")) {
    ///     Ok(msgno) => println!("sent as {msgno}"),
    ///     Err(Error::QueueFull { queued, .. }) => println!("{queued} octets still unsent; later"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_send_msg(&self, message: Message) -> Result<MsgNo, Error> {
        self.conn
            .shared
            .try_room(|st| Ok(st.core.send_msg(self.number, message)?))
    }

    /// Like [`Channel::reply_rpy`], but [`Error::QueueFull`] instead of
    /// waiting for room (the reply is not taken; send it again later).
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel, m: beep_proto::IncomingMessage) {
    /// if let Err(e) = channel.try_reply_rpy(m.msgno, m.message) {
    ///     eprintln!("not now: {e}");
    /// }
    /// # }
    /// ```
    pub fn try_reply_rpy(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        self.conn
            .shared
            .try_room(|st| Ok(st.core.send_rpy(self.number, msgno, message)?))
    }

    /// Like [`Channel::reply_err`], but [`Error::QueueFull`] instead of
    /// waiting for room.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_blocking::Error> {
    /// channel.try_reply_err(msgno, beep_proto::Message::new("busy"))?;
    /// # Ok(()) }
    /// ```
    pub fn try_reply_err(&self, msgno: MsgNo, message: Message) -> Result<(), Error> {
        self.conn
            .shared
            .try_room(|st| Ok(st.core.send_err(self.number, msgno, message)?))
    }

    /// Like [`Channel::reply_ans`], but [`Error::QueueFull`] instead of
    /// waiting for room.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel, msgno: beep_proto::MsgNo) -> Result<(), beep_blocking::Error> {
    /// let ansno = channel.try_reply_ans(msgno, beep_proto::Message::new("part"))?;
    /// # Ok(()) }
    /// ```
    pub fn try_reply_ans(&self, msgno: MsgNo, message: Message) -> Result<AnsNo, Error> {
        self.conn
            .shared
            .try_room(|st| Ok(st.core.send_ans(self.number, msgno, message)?))
    }

    /// Changes how many octets the peer may send on this channel ahead of
    /// what the application has taken (LibVortex `set_window_size`). A
    /// larger window is advertised at once; a smaller one takes effect as
    /// the peer uses the credit already granted (RFC 3081 3.1.4). From
    /// 4096 to 2147483647.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
    /// channel.set_window(1 << 20)?; // bulk transfers on this channel
    /// # Ok(()) }
    /// ```
    pub fn set_window(&self, window: u32) -> Result<(), Error> {
        self.conn
            .shared
            .with_session(|st| Ok(st.core.set_receive_window(self.number, window)?))
    }

    /// Ends the answers to MSG `msgno` (a NUL carries no payload: it never
    /// waits for room).
    pub fn reply_nul(&self, msgno: MsgNo) -> Result<(), Error> {
        self.conn
            .shared
            .with_session(|st| Ok(st.core.send_nul(self.number, msgno)?))
    }

    /// Sets the handler for MSGs and for replies nobody waits for
    /// (PyVortex `set_frame_received`).
    pub fn set_message_handler<R: HandlerResult>(
        &self,
        handler: impl Fn(&Channel, IncomingMessage) -> R + Send + Sync + 'static,
    ) {
        let st = self.conn.shared.lock();
        State::install(st, self.number, false, |h| &mut h.message, erase(handler));
    }

    /// The channel's MSGs and the replies nobody waits for as a queue to
    /// read ([`Incoming::recv`], or iterate), instead of a message handler
    /// (it replaces the one set). Each message's window goes back to the
    /// peer when it is read, so a reader that falls behind slows the peer
    /// down without blocking the connection's other channels.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
    /// let incoming = channel.incoming();
    /// channel.send_msg(beep_proto::Message::new("subscribe"))?;
    /// for event in incoming {
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
    /// handler returns. Refused while a request on the channel waits for a
    /// whole reply or a message is half received; requests (which wait for
    /// whole replies) are refused afterwards: use `send_msg`.
    ///
    /// A message the peer had sent whole before the switch reaches the
    /// handler as one final frame. An error or a panic on a frame of a MSG
    /// answers that MSG with ERR at once, even with frames still to come
    /// (they reach the handler too; a reply after that fails). For MSGs
    /// the peer may send as soon as the channel is open,
    /// `ProfileHandler::on_frame` switches before any can arrive.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
    /// let file = std::sync::Mutex::new(std::fs::File::create("download")?);
    /// channel.set_frame_handler(move |_, frame| -> std::io::Result<()> {
    ///     // The first frame starts with the MIME header block.
    ///     file.lock().unwrap().write_all(&frame.payload)?;
    ///     if !frame.more {
    ///         println!("message {} complete", frame.msgno);
    ///     }
    ///     Ok(())
    /// })?;
    /// channel.send_msg(beep_proto::Message::new("get big-file"))?;
    /// # Ok(()) }
    /// ```
    pub fn set_frame_handler<R: HandlerResult>(
        &self,
        handler: impl Fn(&Channel, IncomingFrame) -> R + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let mut st = self.conn.shared.lock();
        st.core.stream_frames(self.number)?;
        State::install(st, self.number, false, |h| &mut h.frame, erase(handler));
        Ok(())
    }

    /// Sets the handler that decides on the peer's requests to close this
    /// channel (replacing the one set, e.g. by its profile): a channel the
    /// application opened has none, and agrees. The handler sees the
    /// peer's reply code and diagnostic ([`CloseRequest`], RFC 3080
    /// 2.3.1.3) and returns a [`CloseDecision`] or a `bool` (`false`
    /// refuses with 550 "close refused"); a panic agrees. A channel that
    /// is closed already keeps none.
    ///
    /// ```no_run
    /// use beep_blocking::CloseDecision;
    /// use beep_proto::ReplyCode;
    /// # fn run(channel: beep_blocking::Channel) {
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

    /// Asks the peer to close the channel and waits for its decision; a
    /// refusal is [`Error::Refused`] and leaves the channel open.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
    /// channel.close()?;
    /// # Ok(()) }
    /// ```
    pub fn close(&self) -> Result<(), Error> {
        self.close_with(ReplyCode::SUCCESS, "")
    }

    /// Like [`Channel::close`], with a reply code and a diagnostic for the
    /// peer (RFC 3080 2.3.1.3): its close handler sees them.
    ///
    /// ```no_run
    /// use beep_blocking::Error;
    /// use beep_proto::ReplyCode;
    /// # fn run(channel: beep_blocking::Channel) -> Result<(), Error> {
    /// match channel.close_with(ReplyCode::SERVICE_NOT_AVAILABLE, "shutting down for maintenance") {
    ///     Ok(()) => println!("closed"),
    ///     Err(Error::Refused { code, text }) => println!("the peer keeps it open: {code} {text}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn close_with(&self, code: ReplyCode, text: &str) -> Result<(), Error> {
        let (notify, waiter) = Waiter::pair();
        self.conn
            .shared
            .with_session(|st| Ok(st.core.close_with(self.number, code, text, notify)?))?;
        wait(
            &self.conn.shared,
            waiter,
            self.conn.shared.options.channel_timeout,
        )
        .map(drop)
    }
}
