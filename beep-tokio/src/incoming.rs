//! A channel's messages as a [`Stream`], bounded by the peer's window.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use beep_proto::IncomingMessage;
use beep_proto::dispatch::{Handled, MessageDone};
use futures_channel::mpsc;
use futures_util::Stream;

use crate::channel::Channel;
use crate::profile::MessageHandler;

/// The MSGs and unawaited replies of a channel, as a [`Stream`] (from
/// [`Channel::incoming`]). A message's window goes back to the peer when
/// the stream yields it, so what waits here is bounded by the window the
/// peer was given.
///
/// Dropping it answers the MSGs still queued with ERR (nobody will) and
/// gives their window back; later messages get the same. It ends when the
/// channel or the connection closes. Only the connection's dispatcher
/// feeds it: do not await it inside a handler of the same connection.
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn run(channel: beep_tokio::Channel) -> Result<(), beep_tokio::Error> {
/// let mut incoming = channel.incoming();
/// while let Some(m) = incoming.next().await {
///     channel.reply_rpy(m.msgno, m.message).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Incoming {
    channel: Channel,
    rx: mpsc::UnboundedReceiver<IncomingMessage>,
}

impl Incoming {
    /// Makes `channel`'s message handler feed the returned stream.
    pub(crate) fn attach(channel: &Channel) -> (Self, Arc<MessageHandler>) {
        let (tx, rx) = mpsc::unbounded();
        let handler: Arc<MessageHandler> = Arc::new(move |_, m| {
            let handled = match tx.unbounded_send(m) {
                Ok(()) => Handled::Kept,
                // The stream is gone: nobody will answer.
                Err(_) => Handled::NoHandler,
            };
            Box::pin(std::future::ready(handled))
        });
        let incoming = Incoming {
            channel: channel.clone(),
            rx,
        };
        (incoming, handler)
    }
}

impl Stream for Incoming {
    type Item = IncomingMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(Some(m)) = &polled {
            let (channel, credit) = (m.channel, m.credit);
            let _ = self.channel.shared().with_session(|st| {
                st.core.consumed(channel, credit);
                Ok(())
            });
        }
        polled
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.rx.close();
        let mut left = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(m) => left.push(MessageDone::of(&m)),
                Err(e) if e.is_closed() => break,
                // A send still in flight on another thread: it lands.
                Err(_) => std::thread::yield_now(),
            }
        }
        if !left.is_empty() {
            let _ = self.channel.shared().with_session(|st| {
                for done in &left {
                    st.core.message_handled(done, Handled::NoHandler);
                }
                Ok(())
            });
        }
    }
}
