//! The dispatcher task: application code (start, message and close
//! handlers, callbacks), one at a time per connection, in arrival order.
//! A panic in application code is caught and confined.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use beep_proto::dispatch::{CloseRequest, Handled, MessageDone};
use beep_proto::{IncomingFrame, IncomingMessage, StartRequest};
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{FutureExt, StreamExt};

use crate::channel::Channel;
use crate::connection::Connection;
use crate::profile::Handler;
use crate::shared::{Action, ChannelHandlers, Shared, cork};

pub(crate) async fn run(shared: Arc<Shared>, mut inbox: UnboundedReceiver<Action>) {
    let conn = Connection::internal(shared);
    while let Some(first) = inbox.next().await {
        // Everything already queued runs as one batch whose writer
        // wake-ups are held (see `cork`) and released when it ends.
        let batch = cork::batch(&conn.shared);
        let mut next = Some(first);
        while let Some(action) = next {
            // Again: a handler that waited released it.
            cork::begin(&conn.shared);
            match action {
                Action::Exit => return,
                Action::Run(f) => {
                    let _ = catch_unwind(AssertUnwindSafe(f));
                }
                Action::Start(request) => on_start(&conn, request),
                Action::Message(m) => on_message(&conn, m).await,
                Action::Frame(f) => on_frame(&conn, f).await,
                Action::CloseRequested(request) => on_close_requested(&conn, request),
            }
            next = inbox.try_recv().ok();
        }
        drop(batch);
    }
}

/// Picks the first offered profile we serve and asks its start handler
/// (outside the session lock); refuses when none is served, as the
/// registry's unknown-profile handler says.
fn on_start(conn: &Connection, request: StartRequest) {
    let chosen = conn
        .shared
        .registry
        .profiles
        .decide_start_with(&request, |h, offer| {
            h.start.as_ref().map(|start| start(conn, &request, offer))
        });
    let mut handlers = chosen
        .as_ref()
        .ok()
        .map(|(_, h, _)| ChannelHandlers::new(h.message.clone(), h.close.clone(), h.frame.clone()));
    let added = chosen.as_ref().ok().and_then(|(_, h, _)| h.added.clone());
    let opened = conn.shared.with_session(|st| {
        let answer = chosen.map(|(offer, _, decision)| (offer, decision));
        Ok(st.answer_start(&request, answer, &mut handlers)?)
    });
    // The handlers not taken, or left from an earlier channel with this
    // number, are dropped outside the lock: a drop may call back in.
    drop(handlers);
    // Open on our side, its reply queued: the application may use it.
    if let (Ok(true), Some(added)) = (opened, added) {
        let channel = Channel::new(conn.clone(), request.channel);
        let _ = catch_unwind(AssertUnwindSafe(|| added(&channel)));
    }
}

/// Runs the channel's message handler to completion, then gives the
/// message's window back. A panic (while building or polling the handler's
/// future) ends the channel, not the connection, and an unanswered MSG gets
/// an ERR so the peer is not left waiting.
async fn on_message(conn: &Connection, m: IncomingMessage) {
    let done = MessageDone::of(&m);
    // Routed whole before the channel switched to frames: one final frame.
    let framed = conn.shared.lock().frames(done.channel);
    if framed {
        run_handler(conn, &done, |h| h.frame.clone(), m.into_frame()).await;
    } else {
        run_handler(conn, &done, |h| h.message.clone(), m).await;
    }
}

/// Runs the channel's frame handler, like [`on_message`].
async fn on_frame(conn: &Connection, f: IncomingFrame) {
    let done = MessageDone::of_frame(&f);
    run_handler(conn, &done, |h| h.frame.clone(), f).await;
}

/// Runs the handler `pick` finds for `item`'s channel to completion, then
/// gives the window back (and answers for a missing or failed handler).
async fn run_handler<T>(
    conn: &Connection,
    done: &MessageDone,
    pick: impl FnOnce(&ChannelHandlers) -> Option<Arc<Handler<T>>>,
    item: T,
) {
    let handler = conn
        .shared
        .lock()
        .channels
        .get(&done.channel)
        .and_then(pick);
    let handled = match handler {
        Some(handler) => {
            let channel = Channel::new(conn.clone(), done.channel);
            match catch_unwind(AssertUnwindSafe(|| handler(channel, item))) {
                Ok(future) => {
                    let mut future = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
                    // Held wake-ups go out before the handler waits: what
                    // it waits for may depend on them.
                    let shared = &conn.shared;
                    let handled = std::future::poll_fn(|cx| {
                        cork::begin(shared);
                        let poll = future.as_mut().poll(cx);
                        if poll.is_pending() {
                            cork::release(shared);
                        }
                        poll
                    });
                    handled.await.unwrap_or(Handled::Failed)
                }
                Err(_) => Handled::Failed,
            }
        }
        None => Handled::NoHandler,
    };
    let _ = conn.shared.with_session(|st| {
        st.core.message_handled(done, handled);
        Ok(())
    });
}

/// Asks the channel's close handler (set by its profile, or on a channel
/// we opened) about the peer's close request, and answers.
fn on_close_requested(conn: &Connection, request: CloseRequest) {
    let number = request.channel;
    let close = conn
        .shared
        .lock()
        .channels
        .get(&number)
        .and_then(|h| h.close.clone());
    let decision = request.decide(close.map(|close| {
        let channel = Channel::new(conn.clone(), number);
        move |r: &CloseRequest| close(&channel, r)
    }));
    let _ = conn
        .shared
        .with_session(|st| Ok(st.core.answer_close(number, decision)?));
}
