//! The dispatcher task: application code (start, message and close
//! handlers, callbacks), one at a time per connection, in arrival order.
//! A panic in application code is caught and confined.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use beep_proto::{IncomingMessage, Message, MessageKind, StartRequest};
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{FutureExt, StreamExt};

use crate::channel::Channel;
use crate::connection::Connection;
use crate::shared::{Action, ChannelHandlers, Shared};

pub(crate) async fn run(shared: Arc<Shared>, mut inbox: UnboundedReceiver<Action>) {
    let conn = Connection { shared };
    while let Some(action) = inbox.next().await {
        match action {
            Action::Exit => return,
            Action::Run(f) => {
                let _ = catch_unwind(AssertUnwindSafe(f));
            }
            Action::Start(request) => on_start(&conn, request),
            Action::Message(m) => on_message(&conn, m).await,
            Action::CloseRequested(channel) => on_close_requested(&conn, channel),
        }
    }
}

/// Picks the first offered profile we serve and asks its start handler
/// (outside the session lock); refuses when none is served.
fn on_start(conn: &Connection, request: StartRequest) {
    let chosen = conn
        .shared
        .registry
        .profiles
        .decide_start(&request, |h| h.start.as_deref())
        .map(|(offer, handler, decision)| (offer.clone(), handler.clone(), decision));
    let _ = conn.shared.with_session(|st| {
        let answer = chosen.as_ref().map(|(offer, _, d)| (offer, d.clone()));
        if st.core.answer_start(&request, answer)?
            && let Some((_, handler, _)) = &chosen
        {
            st.channels.insert(
                request.channel,
                ChannelHandlers {
                    message: Some(handler.message.clone()),
                    close: handler.close.clone(),
                },
            );
        }
        Ok(())
    });
}

/// Runs the channel's handler to completion, then gives the message's
/// window back. A panic (while building or polling the handler's future)
/// ends the channel, not the connection, and an unanswered MSG gets an ERR
/// so the peer is not left waiting.
async fn on_message(conn: &Connection, m: IncomingMessage) {
    let (number, msgno, kind, credit) = (m.channel, m.msgno, m.kind, m.credit);
    let handler = conn
        .shared
        .lock()
        .channels
        .get(&number)
        .and_then(|h| h.message.clone());
    let channel = Channel::new(conn.clone(), number);
    let ok = match handler {
        Some(handler) => match catch_unwind(AssertUnwindSafe(|| handler(channel.clone(), m))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await.is_ok(),
            Err(_) => false,
        },
        None => {
            if kind == MessageKind::Msg {
                let text = Message::new("no handler for this channel");
                let _ = channel.reply_err(msgno, text).await;
            }
            true
        }
    };
    let _ = conn.shared.with_session(|st| {
        st.core.consumed(number, credit);
        if !ok {
            st.core.handler_failed(number, msgno, kind);
        }
        Ok(())
    });
}

fn on_close_requested(conn: &Connection, number: u32) {
    let close = conn
        .shared
        .lock()
        .channels
        .get(&number)
        .and_then(|h| h.close.clone());
    let agree = match close {
        Some(close) => {
            let channel = Channel::new(conn.clone(), number);
            catch_unwind(AssertUnwindSafe(|| close(&channel))).unwrap_or(true)
        }
        None => true,
    };
    let _ = conn
        .shared
        .with_session(|st| Ok(st.core.answer_close(number, agree)?));
}
