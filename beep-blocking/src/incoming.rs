//! A channel's messages as a queue the application reads, bounded by the
//! peer's window.

use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::Duration;

use beep_proto::IncomingMessage;
use beep_proto::dispatch::{Handled, MessageDone};

use crate::channel::Channel;
use crate::connection::cork;
use crate::error::Error;
use crate::profile::MessageHandler;

/// The MSGs and unawaited replies of a channel, to read with
/// [`Incoming::recv`] or as an iterator (from [`Channel::incoming`]). A
/// message's window goes back to the peer when it is read, so what waits
/// here is bounded by the window the peer was given.
///
/// Dropping it answers the MSGs still queued with ERR (nobody will) and
/// gives their window back; later messages get the same. Reading ends
/// when the channel or the connection closes. Only the connection's
/// dispatcher feeds it: do not read it inside a handler of the same
/// connection.
///
/// ```no_run
/// # fn run(channel: beep_blocking::Channel) -> Result<(), beep_blocking::Error> {
/// for m in channel.incoming() {
///     channel.reply_rpy(m.msgno, m.message)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Incoming {
    channel: Channel,
    rx: mpsc::Receiver<IncomingMessage>,
    /// The handler's sender, taken when this is dropped so that nothing is
    /// queued after the drain. Only the handler owns it: when the channel
    /// or the connection closes, the handler and the sender go, and reading
    /// ends.
    tx: Weak<Mutex<Option<mpsc::Sender<IncomingMessage>>>>,
}

impl Incoming {
    /// Makes `channel`'s message handler feed the returned queue.
    pub(crate) fn attach(channel: &Channel) -> (Self, Arc<MessageHandler>) {
        let (tx, rx) = mpsc::channel();
        let feed = Arc::new(Mutex::new(Some(tx)));
        let tx = Arc::downgrade(&feed);
        let handler: Arc<MessageHandler> = Arc::new(move |_, m| {
            let feed = feed.lock().unwrap_or_else(|p| p.into_inner());
            match feed.as_ref().map(|tx| tx.send(m)) {
                Some(Ok(())) => Handled::Kept,
                // Nobody reads any more: nobody will answer.
                _ => Handled::NoHandler,
            }
        });
        let incoming = Incoming {
            channel: channel.clone(),
            rx,
            tx,
        };
        (incoming, handler)
    }

    /// The next message, waiting for it; `None` once the channel closed.
    pub fn recv(&self) -> Option<IncomingMessage> {
        cork::release_held();
        self.rx.recv().ok().map(|m| self.took(m))
    }

    /// The next message, waiting at most `timeout`: [`Error::Timeout`], or
    /// [`Error::ChannelClosed`] once the channel closed.
    ///
    /// ```no_run
    /// # fn run(channel: beep_blocking::Channel) {
    /// let incoming = channel.incoming();
    /// match incoming.recv_timeout(std::time::Duration::from_secs(1)) {
    ///     Ok(m) => println!("{:?}", m.message.body()),
    ///     Err(e) => println!("nothing: {e}"),
    /// }
    /// # }
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<IncomingMessage, Error> {
        cork::release_held();
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Ok(self.took(m)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::ChannelClosed),
        }
    }

    /// Gives the message's window back as the application takes it.
    fn took(&self, m: IncomingMessage) -> IncomingMessage {
        let (channel, credit) = (m.channel, m.credit);
        let _ = self.channel.connection().shared.with_session(|st| {
            st.core.consumed(channel, credit);
            Ok(())
        });
        m
    }
}

impl Iterator for Incoming {
    type Item = IncomingMessage;

    /// Waits for the next message; `None` once the channel closed.
    fn next(&mut self) -> Option<IncomingMessage> {
        self.recv()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(feed) = self.tx.upgrade() {
            drop(feed.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
        let left: Vec<_> = self.rx.try_iter().map(|m| MessageDone::of(&m)).collect();
        if !left.is_empty() {
            let _ = self.channel.connection().shared.with_session(|st| {
                for done in &left {
                    st.core.message_handled(done, Handled::NoHandler);
                }
                Ok(())
            });
        }
    }
}
