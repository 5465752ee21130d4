//! The state behind a connection's handles and tasks: the session (in a
//! `dispatch::Core`) with its waiters, the channels' handlers, and the
//! notifications that wake the tasks. The session sits behind a plain
//! mutex that is never held across an await or application code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use beep_proto::dispatch::{Core, Done, Outcome};
use beep_proto::{IncomingFrame, IncomingMessage, Session, StartRequest};
use event_listener::Event;
use futures_channel::{mpsc, oneshot};

use crate::error::{CloseReason, Error};
use crate::options::Options;
use crate::profile::{CloseHandler, FrameHandler, MessageHandler, Registry};
use crate::runtime::{self, Runtime};

/// Where a waiting caller gets its result: an awaiting future or a callback.
pub(crate) enum Notify {
    Wait(oneshot::Sender<Result<Done, Error>>),
    Call(Box<dyn FnOnce(Result<Done, Error>) + Send>),
}

impl Notify {
    /// An awaiting caller is woken at once; a callback runs on the
    /// dispatcher, never under the session lock.
    fn complete(self, result: Result<Done, Error>, actions: &mut Vec<Action>) {
        match self {
            Notify::Wait(tx) => {
                let _ = tx.send(result);
            }
            Notify::Call(f) => actions.push(Action::Run(Box::new(move || f(result)))),
        }
    }
}

/// Work for the dispatcher task.
pub(crate) enum Action {
    Start(StartRequest),
    Message(IncomingMessage),
    Frame(IncomingFrame),
    CloseRequested(u32),
    Run(Box<dyn FnOnce() + Send>),
    Exit,
}

/// Handlers of one open channel.
#[derive(Clone, Default)]
pub(crate) struct ChannelHandlers {
    pub(crate) message: Option<Arc<MessageHandler>>,
    pub(crate) close: Option<Arc<CloseHandler>>,
    /// Set when the channel delivers frames instead of messages.
    pub(crate) frame: Option<Arc<FrameHandler>>,
}

/// Runs once when the connection ends.
pub(crate) type CloseCallback = Box<dyn FnOnce(&CloseReason) + Send>;

pub(crate) struct State {
    pub(crate) core: Core<Notify>,
    pub(crate) channels: HashMap<u32, ChannelHandlers>,
    on_close: Vec<CloseCallback>,
}

impl State {
    pub(crate) fn session(&mut self) -> &mut Session {
        self.core.session_mut()
    }

    /// True if the writer has work: bytes to send, or an end to act on.
    pub(crate) fn wants_writer(&self) -> bool {
        let session = self.core.session();
        session.wants_transmit() || session.is_ended() || self.core.ended().is_some()
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Notified whenever the session changed: results, room, closure.
    changed: Event,
    /// Wakes the writer.
    pub(crate) output: Event,
    /// Set once the connection has ended, for any reason: the reader stops.
    pub(crate) ended: AtomicBool,
    /// Set when the stream must be dropped without flushing (any end but a
    /// release, or `shutdown`): the writer stops too.
    pub(crate) aborted: AtomicBool,
    /// Notified when `ended` or `aborted` is set.
    stopped: Event,
    /// A writer wake-up held back by [`cork`].
    output_held: AtomicBool,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) registry: Registry,
    pub(crate) options: Options,
    pub(crate) runtime: Arc<dyn Runtime>,
    actions: mpsc::UnboundedSender<Action>,
}

impl Shared {
    pub(crate) fn new(
        session: Session,
        peer: Option<SocketAddr>,
        registry: Registry,
        options: Options,
        runtime: Arc<dyn Runtime>,
        actions: mpsc::UnboundedSender<Action>,
    ) -> Self {
        Shared {
            state: Mutex::new(State {
                core: Core::new(session),
                channels: HashMap::new(),
                on_close: Vec::new(),
            }),
            changed: Event::new(),
            output: Event::new(),
            ended: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            stopped: Event::new(),
            output_held: AtomicBool::new(false),
            peer,
            registry,
            options,
            runtime,
            actions,
        }
    }

    /// Runs `f` once the connection ends (at once, outside the lock, if
    /// it has).
    pub(crate) fn on_close(&self, f: CloseCallback) {
        let mut st = self.lock();
        match st.core.ended().cloned() {
            Some(reason) => {
                drop(st);
                f(&reason);
            }
            None => st.on_close.push(f),
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Handlers never run under the lock; if something panicked while
        // holding it, recover the state rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the session, then routes the events it produced and
    /// wakes the writer: every session call goes through here.
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut actions = Vec::new();
        let (result, transmit) = {
            let mut st = self.lock();
            if let Err(failure) = st.core.live() {
                return Err(failure.into());
            }
            let result = f(&mut st);
            self.route(&mut st, &mut actions);
            (result, st.wants_writer())
        };
        self.after(actions, transmit);
        result
    }

    /// Like [`Shared::with_session`], first waiting until queued output is
    /// below the limit. Only application code calls this: the I/O tasks
    /// never wait on the peer's reading.
    pub(crate) async fn with_room<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let limit = self.options.max_queued_output;
        self.wait_until(|st| {
            st.core.ended().is_some() || st.core.session().queued_output() <= limit
        })
        .await;
        self.with_session(f)
    }

    /// Like [`Shared::with_session`] if queued output is within the limit;
    /// else [`Error::QueueFull`] at once (the non-blocking sends).
    pub(crate) fn try_room<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let limit = self.options.max_queued_output;
        self.with_session(|st| {
            st.core.check_room(limit)?;
            f(st)
        })
    }

    /// Waits until `done` holds for the state. A listener is registered
    /// before each check that may wait, so a change between check and wait
    /// is not lost; the common case (ready at once) registers none.
    pub(crate) async fn wait_until(&self, done: impl Fn(&State) -> bool) {
        if done(&self.lock()) {
            return;
        }
        loop {
            let listener = self.changed.listen();
            if done(&self.lock()) {
                return;
            }
            listener.await;
        }
    }

    /// Waits until `flag` (`ended` or `aborted`) is set.
    pub(crate) async fn wait_flag(&self, flag: &AtomicBool) {
        loop {
            if flag.load(Ordering::Acquire) {
                return;
            }
            let listener = self.stopped.listen();
            if flag.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    /// Waits for a waiter's result; a vanished connection or a timeout is
    /// an error.
    pub(crate) async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, Error>>,
        limit: Duration,
    ) -> Result<T, Error> {
        match runtime::timeout(&*self.runtime, limit, rx).await {
            Some(Ok(result)) => result,
            Some(Err(oneshot::Canceled)) => Err(Error::Closed(CloseReason::Shutdown)),
            None => Err(Error::Timeout),
        }
    }

    /// Wakes waiters (and the writer if `transmit`: only then, since a
    /// wake-up with nothing to write is a wasted task switch), and hands
    /// actions to the dispatcher.
    pub(crate) fn after(&self, actions: Vec<Action>, transmit: bool) {
        if transmit {
            if cork::holds(self) {
                self.output_held.store(true, Ordering::Relaxed);
            } else {
                self.output.notify(usize::MAX);
            }
        }
        self.changed.notify(usize::MAX);
        if self.ended.load(Ordering::Acquire) {
            self.stopped.notify(usize::MAX);
        }
        for action in actions {
            let _ = self.actions.unbounded_send(action);
        }
    }

    /// Turns session events into results for waiters and work for the
    /// dispatcher. Called with the lock held; runs no application code.
    pub(crate) fn route(&self, st: &mut State, actions: &mut Vec<Action>) {
        let mut outcomes = Vec::new();
        st.core.route(&mut outcomes);
        self.apply(st, outcomes, actions);
    }

    fn apply(&self, st: &mut State, outcomes: Vec<Outcome<Notify>>, actions: &mut Vec<Action>) {
        for outcome in outcomes {
            match outcome {
                Outcome::Complete(notify, result) => {
                    if let Ok(Done::Opened { channel, .. }) = &result {
                        st.channels.entry(*channel).or_default();
                    }
                    notify.complete(result.map_err(Error::from), actions);
                }
                Outcome::Start(request) => actions.push(Action::Start(request)),
                Outcome::Message(m) => actions.push(Action::Message(m)),
                Outcome::Frame(f) => actions.push(Action::Frame(f)),
                Outcome::CloseRequested(channel) => actions.push(Action::CloseRequested(channel)),
                Outcome::ChannelClosed(channel) => {
                    // Application closures are dropped on the dispatcher,
                    // never under this lock (a drop may call back in).
                    if let Some(handlers) = st.channels.remove(&channel) {
                        actions.push(Action::Run(Box::new(move || drop(handlers))));
                    }
                }
                Outcome::Ended(reason) => {
                    for callback in st.on_close.drain(..) {
                        let reason = reason.clone();
                        actions.push(Action::Run(Box::new(move || callback(&reason))));
                    }
                    // Every channel is gone with the connection: its
                    // handlers go too (ending incoming queues), on the
                    // dispatcher, never under this lock.
                    let handlers = std::mem::take(&mut st.channels);
                    actions.push(Action::Run(Box::new(move || drop(handlers))));
                    actions.push(Action::Exit);
                    // Released: the writer flushes the final <ok/>, then
                    // closes; anything else drops the stream at once.
                    if reason != CloseReason::Released {
                        self.aborted.store(true, Ordering::Release);
                    }
                    self.ended.store(true, Ordering::Release);
                }
            }
        }
        // Sent under the lock, so actions reach the dispatcher in the order
        // they were routed and nothing can follow its Exit.
        for action in actions.drain(..) {
            let _ = self.actions.unbounded_send(action);
        }
    }

    /// Feeds input from the stream.
    pub(crate) fn input(&self, st: &mut State, bytes: &[u8], actions: &mut Vec<Action>) {
        let mut outcomes = Vec::new();
        st.core.handle_input(bytes, &mut outcomes);
        self.apply(st, outcomes, actions);
    }

    /// The peer closed the stream: the session ends as the core decides
    /// (a release whose `<ok/>` is queued still completes; anything else
    /// is a lost connection).
    pub(crate) fn eof(&self) {
        let mut actions = Vec::new();
        {
            let mut st = self.lock();
            let mut outcomes = Vec::new();
            st.core.handle_eof(&mut outcomes);
            self.apply(&mut st, outcomes, &mut actions);
        }
        self.after(actions, true);
    }

    /// Ends the connection once: every waiter gets the reason, close
    /// callbacks run on the dispatcher, the stream closes.
    pub(crate) fn finish(&self, reason: CloseReason) {
        let mut actions = Vec::new();
        {
            let mut st = self.lock();
            let mut outcomes = Vec::new();
            st.core.end(reason, &mut outcomes);
            self.apply(&mut st, outcomes, &mut actions);
        }
        // The writer must look again: it flushes and closes, or stops.
        self.after(actions, true);
    }

    /// Stops the reader and writer without flushing.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.stopped.notify(usize::MAX);
        self.output.notify(usize::MAX);
    }
}

/// Writer wake-ups held back while the dispatcher runs handlers that do
/// not yield, so the replies to a burst of messages leave in one write
/// instead of waking the writer once each. Held only between two awaits of
/// the dispatcher on one thread: whatever may wait (the next action, a
/// handler that returns `Pending`) releases first, because the peer may be
/// waiting for those bytes.
pub(crate) mod cork {
    use std::cell::Cell;
    use std::sync::atomic::Ordering;

    use super::Shared;

    thread_local! {
        /// The connection whose dispatcher is running on this thread.
        static CORKED: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
    }

    /// From now on, this thread's writes to `shared` hold the wake-up.
    pub(crate) fn begin(shared: &Shared) {
        CORKED.set(shared);
    }

    /// Releases when dropped, also when unwinding: a thread must never be
    /// left naming a connection (or a later one at the same address).
    pub(crate) struct Batch<'a>(&'a Shared);

    /// Holds wake-ups for `shared` until the returned guard is dropped.
    pub(crate) fn batch(shared: &Shared) -> Batch<'_> {
        begin(shared);
        Batch(shared)
    }

    impl Drop for Batch<'_> {
        fn drop(&mut self) {
            release(self.0);
        }
    }

    /// True if the calling thread holds wake-ups for `shared`.
    pub(crate) fn holds(shared: &Shared) -> bool {
        std::ptr::eq(CORKED.get(), shared)
    }

    /// Stops holding and wakes the writer if a wake-up was held.
    pub(crate) fn release(shared: &Shared) {
        if holds(shared) {
            CORKED.set(std::ptr::null());
        }
        if shared.output_held.swap(false, Ordering::Relaxed) {
            shared.output.notify(usize::MAX);
        }
    }
}
