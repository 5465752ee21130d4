//! The dispatcher task: application code (start, message and close
//! handlers, callbacks), one at a time per connection, in arrival order.
//! A panic in application code is caught and confined.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use beep_proto::xml::Profile;
use beep_proto::{IncomingMessage, Message, MessageKind, ReplyCode, StartRequest};
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{FutureExt, StreamExt};

use crate::channel::Channel;
use crate::connection::Connection;
use crate::error::Error;
use crate::profile::{ProfileHandler, StartDecision};
use crate::shared::{Action, ChannelHandlers, Shared, State};

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
        .choose(&request)
        .map(|(offer, handler)| (offer.clone(), handler.clone()));
    let Some((offer, handler)) = chosen else {
        let _ = conn.shared.with_session(|st| {
            let text = "none of the requested profiles is supported";
            st.session().deny_start(
                request.channel,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                text,
            )?;
            Ok(())
        });
        return;
    };
    let decision = match &handler.start {
        Some(start) => catch_unwind(AssertUnwindSafe(|| start(&request, &offer))).unwrap_or(
            StartDecision::Deny(ReplyCode::TRANSACTION_FAILED, "start handler failed".into()),
        ),
        None => StartDecision::Accept(None),
    };
    let _ = conn
        .shared
        .with_session(|st| apply_start(st, &request, offer, handler, decision));
}

fn apply_start(
    st: &mut State,
    request: &StartRequest,
    offer: Profile,
    handler: ProfileHandler,
    decision: StartDecision,
) -> Result<(), Error> {
    match decision {
        StartDecision::Accept(content) => {
            let mut reply = Profile::new(offer.uri);
            if let Some(content) = content {
                reply = reply.with_content(content);
            }
            st.session().accept_start(request.channel, reply)?;
            st.channels.insert(
                request.channel,
                ChannelHandlers {
                    message: Some(handler.message),
                    close: handler.close,
                },
            );
        }
        StartDecision::Deny(code, text) => st.session().deny_start(request.channel, code, &text)?,
    }
    Ok(())
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
            if kind == MessageKind::Msg {
                // Ignore the error if the handler did reply before failing.
                let _ = st
                    .session()
                    .send_err(number, msgno, Message::new("the handler failed"));
            }
            let _ =
                st.session()
                    .close_channel(number, ReplyCode::TRANSACTION_FAILED, "handler failed");
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
    let _ = conn.shared.with_session(|st| {
        if agree {
            st.session().accept_close(number)?;
        } else {
            st.session().deny_close(
                number,
                ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "close refused",
            )?;
        }
        Ok(())
    });
}
