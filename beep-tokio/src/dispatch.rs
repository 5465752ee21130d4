//! The dispatcher task: application code (start, message and close
//! handlers, callbacks), one at a time per connection, in arrival order.
//! A panic in application code is caught and confined. Everything but
//! awaiting a message or frame handler is the shared layer's (see
//! [`Host::step`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, MutexGuard};

use beep_proto::dispatch::{Action, Delivery, Handled, Host, Profiles, Step};
use futures_util::FutureExt;

use crate::channel::Channel;
use crate::connection::Connection;
use crate::profile::{FrameHandler, Handler, Hooks, MessageHandler};
use crate::shared::{Shared, State, Wake, cork};

pub(crate) async fn run(shared: Arc<Shared>) {
    let host = Dispatcher(Connection::internal(shared));
    loop {
        let first = host.0.shared.inbox.next().await;
        // Everything already queued runs as one batch whose writer
        // wake-ups are held (see `cork`) and released when it ends.
        let batch = cork::batch(&host.0.shared);
        let mut next = Some(first);
        while let Some(action) = next {
            // Again: a handler that waited released it.
            cork::begin(&host.0.shared);
            // The TLS acceptor and the auth handler are plain functions
            // that may block (a user database, certificate files): they
            // run on the runtime's blocking pool, so that a slow decision
            // holds this connection's dispatcher only, not a worker
            // thread that other connections' tasks need.
            if matches!(action, Action::TlsRequested(_) | Action::AuthRequested(_)) {
                let conn = host.0.clone();
                let runtime = host.0.shared.runtime.clone();
                // Held wake-ups go out now, and this thread stops holding
                // them: the task may resume on another thread.
                cork::release(&host.0.shared);
                runtime
                    .run_blocking(Box::new(move || {
                        let _ = Dispatcher(conn).step(action);
                    }))
                    .await;
                next = host.0.shared.inbox.pop();
                continue;
            }
            match host.step(action) {
                Step::Exit => return,
                Step::Done => {}
                Step::Message(delivery) => run_handler(&host, delivery).await,
                Step::Frame(delivery) => run_handler(&host, delivery).await,
            }
            next = host.0.shared.inbox.pop();
        }
        drop(batch);
    }
}

/// Runs a message or frame handler to completion, then gives the window
/// back. A panic (while building or polling the handler's future) ends
/// the channel, not the connection, and an unanswered MSG gets an ERR so
/// the peer is not left waiting.
async fn run_handler<T>(host: &Dispatcher, d: Delivery<Channel, T, Handler<T>>) {
    let Delivery {
        handler,
        channel,
        item,
        done,
    } = d;
    let handled = match catch_unwind(AssertUnwindSafe(|| handler(channel, item))) {
        Ok(future) => {
            let mut future = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
            // Held wake-ups go out before the handler waits: what it waits
            // for may depend on them.
            let shared = &host.0.shared;
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
    };
    host.handled(&done, handled);
}

/// A connection as its dispatcher sees it: the shared layer's [`Host`].
struct Dispatcher(Connection);

impl Host for Dispatcher {
    type Connection = Connection;
    type Channel = Channel;
    type Message = MessageHandler;
    type Frame = FrameHandler;
    type Wait = Wake;
    type Guard<'a> = MutexGuard<'a, State>;

    fn connection(&self) -> &Connection {
        &self.0
    }

    fn channel(&self, number: u32) -> Channel {
        Channel::new(self.0.clone(), number)
    }

    fn lock(&self) -> Self::Guard<'_> {
        self.0.shared.lock()
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.0.shared.with_session(|st| Ok(f(st))).ok()
    }

    fn profiles(&self) -> &Profiles<Hooks> {
        &self.0.shared.registry.profiles
    }
}
