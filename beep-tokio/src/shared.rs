//! The state behind a connection's handles and tasks: the session (in a
//! `dispatch::Core`) with its waiters, the channels' handlers, and the
//! notifications that wake the tasks. The session sits behind a plain
//! mutex that is never held across an await or application code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use beep_proto::Session;
use beep_proto::dispatch::{self, Done, Driver, Layer, Room};
use bytes::Bytes;
use event_listener::Event;
use futures_channel::oneshot;

use crate::error::{CloseReason, Error};
use crate::inbox::Inbox;
use crate::options::Options;
use crate::profile::{CloseHandler, FrameHandler, MessageHandler, Registry};
use crate::runtime::{self, Runtime};
use crate::writer::Writer;

/// Where a waiting caller gets its result: an awaiting future or a callback.
pub(crate) type Notify = dispatch::Notify<Wake>;

/// How an awaiting caller is woken.
pub(crate) type Wake = oneshot::Sender<Result<Done, Error>>;

/// Work for the dispatcher task.
pub(crate) use beep_proto::dispatch::Action;

/// Handlers of one open channel.
pub(crate) type ChannelHandlers =
    dispatch::ChannelHandlers<MessageHandler, FrameHandler, CloseHandler>;

/// Runs once when the connection ends.
pub(crate) type CloseCallback = dispatch::CloseCallback;

/// The session, its waiters and the channels' handlers (the shared
/// driver layer), behind the connection's lock.
pub(crate) type State = Layer<Wake, ChannelHandlers>;

/// True if the writer has work: bytes to send, or an end to act on.
pub(crate) fn wants_writer(st: &State) -> bool {
    let session = st.core.session();
    session.wants_transmit() || session.is_ended() || st.core.ended().is_some()
}

pub(crate) struct Shared {
    /// What [`Connection::id`](crate::Connection::id) tells.
    pub(crate) id: u64,
    state: Mutex<State>,
    /// Notified whenever the session changed: results, room, closure.
    changed: Event,
    /// Wakes the writer task.
    pub(crate) output: Event,
    /// The stream's writing half, written by whichever task has output
    /// (see [`crate::writer`]).
    pub(crate) writer: Mutex<Writer>,
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
    /// The dispatcher's queue.
    pub(crate) inbox: Inbox,
    /// Results for waiting callers, routed under the lock and sent after
    /// it (see [`Shared::after`]).
    wakes: Mutex<Vec<(Wake, Result<Done, Error>)>>,
    /// `wakes` has some.
    has_wakes: AtomicBool,
    /// When the connection last moved a byte (see
    /// [`Options::idle_timeout`]).
    pub(crate) activity: dispatch::Activity,
}

impl Shared {
    pub(crate) fn new(
        session: Session,
        peer: Option<SocketAddr>,
        registry: Registry,
        options: Options,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        let activity = dispatch::Activity::new(std::time::Instant::now(), options.idle_timeout);
        Shared {
            id: dispatch::next_connection_id(),
            state: Mutex::new(named(State::new(session), peer)),
            changed: Event::new(),
            output: Event::new(),
            writer: Mutex::new(Writer::default()),
            ended: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            stopped: Event::new(),
            output_held: AtomicBool::new(false),
            peer,
            registry,
            options,
            runtime,
            inbox: Inbox::default(),
            wakes: Mutex::new(Vec::new()),
            has_wakes: AtomicBool::new(false),
            activity,
        }
    }

    /// Runs `f` once the connection ends (at once, outside the lock, if
    /// it has).
    pub(crate) fn on_close(&self, f: CloseCallback) {
        State::on_close(self.lock(), f);
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
            (result, wants_writer(&st))
        };
        self.after(actions, transmit);
        result
    }

    /// Like [`Shared::with_session`], first waiting while queued output is
    /// above the limit (until it is down to three quarters of it: see
    /// [`Room`]). Only application code calls this: the I/O tasks never
    /// wait on the peer's reading.
    pub(crate) async fn with_room<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let room = self.room();
        {
            // The common case, room at once, takes the lock once.
            let mut st = self.lock();
            if !room.full(&st.core) {
                if let Err(failure) = st.core.live() {
                    return Err(failure.into());
                }
                let mut actions = Vec::new();
                let result = f(&mut st);
                self.route(&mut st, &mut actions);
                let transmit = wants_writer(&st);
                drop(st);
                self.after(actions, transmit);
                return result;
            }
        }
        self.wait_until(|st| room.made(&st.core)).await;
        self.with_session(f)
    }

    /// Like [`Shared::with_session`] if queued output is within the limit;
    /// else [`Error::QueueFull`] at once (the non-blocking sends).
    pub(crate) fn try_room<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let room = self.room();
        self.with_session(|st| {
            room.check(&st.core)?;
            f(st)
        })
    }

    /// The backpressure policy for [`Options::max_queued_output`].
    pub(crate) fn room(&self) -> Room {
        Room::new(self.options.max_queued_output)
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

    /// Wakes waiters, gets the output on its way if `transmit` (only
    /// then: a look at the stream with nothing to write is wasted), and
    /// hands actions to the dispatcher.
    pub(crate) fn after(&self, mut actions: Vec<Action>, transmit: bool) {
        // Results and work routed under the lock go out now that it is
        // let go: a task woken under it would run straight into it.
        // (Looked at only when some were routed: this runs after every
        // session call.)
        if self.has_wakes.swap(false, Ordering::Acquire) {
            let woken = std::mem::take(&mut *self.wakes.lock().unwrap_or_else(|p| p.into_inner()));
            for (tx, result) in woken {
                let _ = tx.send(result);
            }
        }
        self.inbox.push(&mut actions);
        self.inbox.wake();
        if transmit {
            if cork::holds(self) {
                self.output_held.store(true, Ordering::Relaxed);
            } else {
                self.push_output();
            }
        }
        self.changed.notify(usize::MAX);
        if self.ended.load(Ordering::Acquire) {
            self.stopped.notify(usize::MAX);
        }
    }

    /// The writer if no other task holds it.
    fn try_lock_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The writer, locked for one poll.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the session's output from the calling task if the stream
    /// takes it now; else (the stream is full, or another task is writing)
    /// wakes the writer task, which waits for the stream. An ended
    /// connection's last bytes and closing are the writer task's.
    pub(crate) fn push_output(&self) {
        if !self.ended.load(Ordering::Acquire)
            && let Some(mut writer) = self.try_lock_writer()
        {
            let mut cx = Context::from_waker(Waker::noop());
            match writer.poll_flush_out(self, &mut cx) {
                // Written. If that was an ended session's last output
                // (its <ok/>), the writer task closes the stream.
                Poll::Ready(Ok(())) if !self.ended.load(Ordering::Acquire) => return,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    drop(writer);
                    self.finish(CloseReason::Lost(e.to_string()));
                    return;
                }
                // The writer task polls again, with a waker of its own.
                Poll::Pending => {}
            }
        }
        self.output.notify(usize::MAX);
    }

    /// Appends the session's next output to `chunks` (nothing if it has
    /// none), and lets senders waiting for room go on. True if more
    /// output is ready after this (the session frames in batches).
    pub(crate) fn take_output(&self, chunks: &mut Vec<Bytes>) -> bool {
        let mut actions = Vec::new();
        let (_, more) = self
            .lock()
            .take_output(chunks, &self.activity, self, &mut actions);
        // Room was made: wake senders waiting for it (not the writer).
        self.after(actions, false);
        more
    }

    /// Turns session events into results for waiters and work for the
    /// dispatcher. Called with the lock held; runs no application code.
    pub(crate) fn route(&self, st: &mut State, actions: &mut Vec<Action>) {
        st.route(self, actions);
    }

    /// Feeds input from the stream.
    pub(crate) fn input(&self, st: &mut State, bytes: &[u8], actions: &mut Vec<Action>) {
        st.input(bytes, self, actions);
    }

    /// The peer closed the stream: the session ends as the core decides
    /// (a release whose `<ok/>` is queued still completes; anything else
    /// is a lost connection).
    pub(crate) fn eof(&self) {
        let mut actions = Vec::new();
        self.lock().eof(self, &mut actions);
        self.after(actions, true);
    }

    /// Ends the connection once: every waiter gets the reason, close
    /// callbacks run on the dispatcher, the stream closes.
    pub(crate) fn finish(&self, reason: CloseReason) {
        let mut actions = Vec::new();
        self.lock().end(reason, self, &mut actions);
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

/// The async driver's part of the shared layer: an awaiting caller is
/// woken through its oneshot, actions go to the dispatcher task's channel,
/// and the end stops the reader (and the writer too, unless a release's
/// last bytes are to be flushed).
impl Driver for Shared {
    type Wait = Wake;
    type Handlers = ChannelHandlers;

    /// An awaiting caller is woken once the lock is let go (see
    /// [`Shared::after`]).
    fn wake(&self, tx: Wake, result: Result<Done, Error>) {
        self.wakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tx, result));
        self.has_wakes.store(true, Ordering::Release);
    }

    fn ended(&self, reason: &CloseReason) {
        // Released: the writer flushes the final <ok/>, then closes. A
        // failed TLS handshake likewise: rustls's alert is the peer's only
        // word on why (a refused certificate, say). Both are bounded by
        // the release timeout. Anything else drops the stream at once.
        if !matches!(reason, CloseReason::Released | CloseReason::Tls(_)) {
            self.aborted.store(true, Ordering::Release);
        }
        self.ended.store(true, Ordering::Release);
    }

    fn dispatch(&self, _: &State, actions: &mut Vec<Action>) {
        self.inbox.push(actions);
    }
}

/// A connection's layer, with the peer named in its tracing events.
fn named(mut state: State, peer: Option<SocketAddr>) -> State {
    if let Some(peer) = peer {
        state.name_peer(&peer);
    }
    state
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
            shared.push_output();
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use beep_proto::dispatch::Room;
    use beep_proto::{Config, Message, xml::Profile};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    use crate::{Connection, Options, ProfileHandler, Registry};

    const SLOW: &str = "http://example.org/beep/slow";
    const LIMIT: usize = 32 << 10;
    /// What one 1000-octet message costs in the queue (with its entry).
    const COST: usize = 1000 + 2 + 128;
    const T: Duration = Duration::from_secs(10);

    /// Waits until `queued` stops changing for a moment; returns it.
    async fn settled(conn: &Connection) -> usize {
        let mut last = conn.queued_output();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = conn.queued_output();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// RFC 3081 3.1.4 leaves the sender's buffering to the implementation:
    /// a sender that waits for room resumes once the queue is down to
    /// three quarters of `max_queued_output` (the shared `Room` policy, as
    /// in beep-blocking), not as soon as it is below the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_waiting_for_room_resume_at_three_quarters_of_the_limit() {
        // The peer handles one message per token: the credit of each goes
        // back only then, so our queue drains a message or two at a time.
        let (go, gate) = tokio::sync::mpsc::unbounded_channel::<()>();
        let gate = Arc::new(tokio::sync::Mutex::new(gate));
        let mut registry = Registry::new();
        registry.register(
            SLOW,
            ProfileHandler::new(move |_, _| {
                let gate = gate.clone();
                async move {
                    let _ = gate.lock().await.recv().await;
                }
            }),
        );
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        // The peer's window stays at 4096 (it would grow as the handler
        // takes messages), so each token drains a message or two.
        let peer_options = Options {
            config: Config {
                receive_window: 4096,
                max_receive_window: 4096,
                ..Config::default()
            },
            ..Options::default()
        };
        let peer = Connection::accept_transport(theirs.compat(), registry, peer_options).unwrap();
        let options = Options {
            max_queued_output: LIMIT,
            ..Options::default()
        };
        let conn = Connection::connect_transport(ours.compat(), options)
            .await
            .unwrap();
        let channel = conn.open_channel(Profile::new(SLOW), None).await.unwrap();
        let message = Message::new(vec![0u8; 1000]);
        // Full, and the writer has taken all the peer's window allows.
        loop {
            while channel.try_send_msg(message.clone()).is_ok() {}
            if settled(&conn).await > LIMIT {
                break;
            }
        }

        let resumed = Arc::new(AtomicBool::new(false));
        let sender = {
            let (channel, message, resumed) = (channel.clone(), message.clone(), resumed.clone());
            let conn = conn.clone();
            tokio::spawn(async move {
                let sent = channel.send_msg(message).await;
                let queued = conn.queued_output();
                resumed.store(true, Ordering::SeqCst);
                (sent, queued)
            })
        };
        // The queue drains a message or two per token, from above the limit.
        let deadline = Instant::now() + T;
        while !resumed.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the sender never resumed");
            go.send(()).unwrap();
            settled(&conn).await;
        }
        let (sent, queued) = sender.await.unwrap();
        assert!(sent.is_ok());
        // Queued when it resumed: its own message, and no more than three
        // quarters of the limit (resuming at the limit leaves 30 KiB).
        let resume_at = Room::new(LIMIT).resume_at();
        assert!(
            queued <= resume_at + 2 * COST,
            "resumed with {queued} queued"
        );
        drop(go);
        conn.shutdown();
        peer.shutdown();
    }
}
