//! The threads of a connection: two workers sharing reading and
//! dispatching (see [`crate::roles`]), and a writer.

use std::io::{ErrorKind, IoSlice};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::MutexGuard;

use beep_proto::Role;
use beep_proto::dispatch::{Delivery, Handled, Host, Profiles, Step};

use crate::channel::Channel;
use crate::connection::{Action, Connection, Shared, State, Wake, cork};
use crate::error::CloseReason;
use crate::profile::{FrameHandler, Handler, Hooks, MessageHandler};
use crate::roles::{self, Job, Workers};
use crate::transport::Transport;

/// The writer's stack. It runs only this crate's code and the core's (and
/// drops what the connection held, when it is the last to let go), so it
/// gets an eighth of the usual 2 MiB: the same few pages are touched
/// either way, but an idle connection reserves 1.8 MiB less address space
/// (and commit charge, where overcommit is strict). The workers run
/// handlers: they keep the default.
const WRITER_STACK: usize = 256 << 10;

/// Starts a connection's workers and writer.
pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let name = shared.label();
    for n in 1..=2 {
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("beep-work{n} {name}"))
            .spawn(move || work(&s))?;
    }
    let s = shared.clone();
    std::thread::Builder::new()
        .name(format!("beep-write {name}"))
        .stack_size(WRITER_STACK)
        .spawn(move || write_loop(&s))?;
    Ok(())
}

/// One of a connection's two workers: reads the socket, or runs handlers
/// (see [`crate::roles`]), whichever role is free.
fn work(shared: &Arc<Shared>) {
    let host = Dispatcher(Connection::internal(shared.clone()));
    let workers = &shared.workers;
    let mut job = workers.next_job();
    loop {
        job = match job {
            Job::Exit => return,
            Job::Read => {
                workers.reading();
                let closed = read_guarded(shared, None);
                workers.after_read(closed)
            }
            Job::Dispatch => {
                // Everything queued runs as one batch, so the replies to a
                // burst of messages leave in few socket writes.
                let exit = cork::batch(|| {
                    while let Some(action) = workers.pop() {
                        if !run_action(&host, action) {
                            return true;
                        }
                    }
                    false
                });
                if exit {
                    workers.exit();
                    return;
                }
                workers.after_dispatch()
            }
        };
    }
}

/// Socket to session, once, by the holder of the reading role: a worker,
/// or a thread waiting for a reply at most `left`. True when the socket or
/// the session ended. A panic (a bug) ends the connection instead of
/// leaving the role held by nobody.
pub(crate) fn read_guarded(shared: &Arc<Shared>, left: Option<Duration>) -> bool {
    if let Some(left) = left {
        set_read_timeout(shared, left);
    }
    catch_unwind(AssertUnwindSafe(|| read_once(shared))).unwrap_or_else(|_| {
        shared.finish(CloseReason::Lost("internal error while reading".into()));
        true
    })
}

/// Makes a read return by `left` (only on a transport with read timeouts:
/// see [`Workers::new`]). SO_RCVTIMEO belongs to the socket, which
/// the workers read too: it is changed only when it is longer than `left`
/// or less than half of it (a syscall per wait otherwise, or many short
/// reads), and a worker that times out clears it. A `left` of 584 years
/// or more (`Duration::MAX`: a wait without deadline) clears it too.
fn set_read_timeout(shared: &Shared, left: Duration) {
    let set = shared.read_timeout.load(Ordering::SeqCst);
    let wanted = u64::try_from(left.as_nanos())
        .ok()
        .map(|nanos| nanos.max(1));
    let fits = match wanted {
        Some(wanted) => set != 0 && set <= wanted && set >= wanted / 2,
        None => set == 0,
    };
    if !fits
        && shared
            .stream
            .set_read_timeout(wanted.map(Duration::from_nanos))
            .is_ok()
    {
        shared
            .read_timeout
            .store(wanted.unwrap_or(0), Ordering::SeqCst);
    }
}

/// The reading buffer's first size, doubled while reads fill it up to
/// [`READ_BUF_MAX`]: a quiet connection holds a page instead of 64 KiB
/// (see the figures on [`Listener`](crate::Listener)).
const READ_BUF_MIN: usize = 4 << 10;
const READ_BUF_MAX: usize = 64 << 10;

/// What the reading thread reads into, kept with the connection.
#[derive(Default)]
pub(crate) struct ReadBuffers {
    bytes: Vec<u8>,
    /// What a read routed, on its way to the dispatcher (its allocation
    /// kept: a new list per read was an allocation per message).
    actions: Vec<Action>,
}

/// Socket to session, once; true when the socket or the session ended.
/// Never waits on anything but the socket and the session lock.
fn read_once(shared: &Arc<Shared>) -> bool {
    let mut buffers = shared.read_buf.lock().unwrap_or_else(|p| p.into_inner());
    let ReadBuffers {
        bytes: buf,
        actions,
    } = &mut *buffers;
    if buf.is_empty() {
        buf.resize(READ_BUF_MIN, 0);
    }
    let n = match shared.stream.read(buf) {
        Ok(0) => {
            shared.eof();
            return true;
        }
        Ok(n) => {
            shared.activity.touch(std::time::Instant::now);
            n
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return false,
        // A read timeout a waiting thread set: it looks at its deadline,
        // and a worker clears it (it reads without one).
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            if !roles::reads_for_app() && shared.stream.set_read_timeout(None).is_ok() {
                shared.read_timeout.store(0, Ordering::SeqCst);
            }
            return false;
        }
        Err(e) => {
            shared.finish(CloseReason::Lost(e.to_string()));
            return true;
        }
    };
    let done = {
        let mut st = shared.lock();
        shared.input(&mut st, &buf[..n], actions);
        st.core.ended().is_some()
    };
    if n == buf.len() && n < READ_BUF_MAX {
        buf.resize((2 * n).min(READ_BUF_MAX), 0);
    }
    // Still holding the buffers (only a reader takes them, and this
    // does not block): the list goes back with its room.
    shared.after(actions);
    done
}

/// After a release, everything (the final `<ok/>` too) is written: end our
/// sending half and read what the peer still sends (SEQ frames for the
/// replies it is reading) until it closes, so that closing finds no unread
/// input. Closing with unread input makes the kernel reset the connection,
/// which can discard replies the peer has received but not read yet.
/// Bounded by the release timeout: the linger thread shuts the stream down
/// if the peer never closes (see `Shared::linger`).
fn drain_after_release(shared: &Shared) {
    shared.stream.shutdown_write();
    let deadline = crate::deadline::after(shared.options.release_timeout);
    let mut scratch = [0u8; 4096];
    loop {
        let left = crate::deadline::left(deadline).unwrap_or(Duration::MAX);
        if left.is_zero() {
            return;
        }
        // Without read timeouts the linger thread's shutdown ends the read.
        let _ = shared
            .stream
            .set_read_timeout(Some(left.min(Duration::from_secs(1))));
        match shared.stream.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Why a listener ends a connection whose peer did not greet within
/// `limit` ([`Options::greeting_timeout`](crate::Options::greeting_timeout)).
fn no_greeting(limit: Duration) -> CloseReason {
    CloseReason::Lost(format!("no greeting within {} s", limit.as_secs_f64()))
}

/// Session to socket, for output no application thread wrote directly
/// (window updates, replies produced by the I/O threads). Closes the
/// socket once a released session has flushed its last bytes. As the
/// listener, it also keeps the greeting timeout: while the peer has not
/// greeted it waits for output at most until then (no thread of its own
/// for the timer), and ends the connection if the greeting is still
/// missing. TLS starts the session over (RFC 3080 3.1.3.2): from the
/// reset the peer has the greeting timeout again for its handshake and
/// its new greeting, so a peer that asks for TLS and goes silent is not
/// kept for ever.
fn write_loop(shared: &Arc<Shared>) {
    /// Tells [`Shared::linger`] that the writer stopped.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            let st = self.0.lock();
            self.0.writer_done.store(true, Ordering::SeqCst);
            drop(st);
            self.0.changed.notify_all();
        }
    }
    let _stopped = Stopped(shared);
    let greeting_timeout = shared.options.greeting_timeout;
    // None once greeted (and for an initiator, or without a deadline).
    let listener = shared.lock().core.session().role() == Role::Listener;
    let mut greeting_due = if listener {
        crate::deadline::after(greeting_timeout)
    } else {
        None
    };
    // The greeting timer was armed again for the greeting over TLS.
    let mut tls_armed = false;
    let mut chunks = Vec::new();
    loop {
        {
            let mut st = shared.lock();
            while !st.core.session().wants_transmit() {
                if st.core.ended().is_some() || st.core.session().is_ended() {
                    let released = st.core.ended() == Some(&CloseReason::Released);
                    drop(st);
                    let _writing = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
                    if released {
                        drain_after_release(shared);
                    }
                    shared.stream.shutdown();
                    return;
                }
                let session = st.core.session();
                if listener && !tls_armed && session.is_tls_active() {
                    tls_armed = true;
                    greeting_due = crate::deadline::after(greeting_timeout);
                }
                if session.peer_greeting().is_some() {
                    greeting_due = None;
                }
                if crate::deadline::passed(crate::deadline::left(greeting_due)) {
                    // Ended here; the next look sees it and closes.
                    drop(st);
                    shared.finish(no_greeting(greeting_timeout));
                    greeting_due = None;
                    st = shared.lock();
                    continue;
                }
                let idle_due = shared.activity.idle_at();
                if crate::deadline::passed(crate::deadline::left(idle_due)) {
                    if st.core.session().is_quiet() {
                        drop(st);
                        shared.finish(shared.activity.reason());
                        st = shared.lock();
                        continue;
                    }
                    // Something is under way (a handler working on its
                    // reply, the peer on ours): not idle; look again later.
                    shared.activity.touch(std::time::Instant::now);
                }
                let next = match (greeting_due, shared.activity.idle_at()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let left = crate::deadline::left(next);
                shared.writer_idle.store(true, Ordering::SeqCst);
                st = match left {
                    None => shared.output.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(left) => {
                        let waited = shared.output.wait_timeout(st, left);
                        waited.unwrap_or_else(|p| p.into_inner()).0
                    }
                };
                shared.writer_idle.store(false, Ordering::SeqCst);
            }
        }
        let writing = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        while shared.take_output(&mut chunks).is_some() {
            if let Err(e) = write_chunks(&*shared.stream, &shared.workers, &chunks) {
                drop(writing);
                shared.finish(CloseReason::Lost(e.to_string()));
                return;
            }
            chunks.clear();
        }
    }
}

/// Writes `chunks` in order with vectored writes (large payloads go to
/// the socket from the application's own buffers). What does not fit in
/// the socket at once (all of it, on a transport that cannot write
/// without blocking) is written while holding a [`PeerWait`]: the socket
/// is read meanwhile, so two peers writing to each other cannot both
/// block with nobody reading.
///
/// [`PeerWait`]: crate::roles::PeerWait
pub(crate) fn write_chunks(
    stream: &dyn Transport,
    workers: &Workers,
    chunks: &[bytes::Bytes],
) -> std::io::Result<()> {
    // A message's write is a handful of chunks: their slices live on the
    // stack (an allocation per write was a tenth of the write path).
    if chunks.len() <= STACK_SLICES {
        let mut slices = [IoSlice::new(&[]); STACK_SLICES];
        for (slot, chunk) in slices.iter_mut().zip(chunks) {
            *slot = IoSlice::new(chunk);
        }
        write_slices(stream, workers, &mut slices[..chunks.len()])
    } else {
        let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        write_slices(stream, workers, &mut slices)
    }
}

/// The most chunks [`write_chunks`] gathers without allocating.
const STACK_SLICES: usize = 16;

/// [`write_chunks`] over the chunks' slices.
fn write_slices(
    stream: &dyn Transport,
    workers: &Workers,
    slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    let mut left = slices;
    match stream.try_write_vectored(left) {
        Some(Ok(n)) => IoSlice::advance_slices(&mut left, n),
        Some(Err(e)) if retry(&e) => {}
        Some(Err(e)) => return Err(e),
        None => {}
    }
    if left.is_empty() {
        return Ok(());
    }
    let _waiting = workers.waiting_on_peer();
    while !left.is_empty() {
        match stream.write_vectored(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Errors after which the blocking write simply goes on.
fn retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// Runs one action; false when the dispatcher should stop. Everything but
/// running a message or frame handler is the shared layer's (see
/// [`Host::step`]).
fn run_action(host: &Dispatcher, action: Action) -> bool {
    match host.step(action) {
        Step::Exit => return false,
        Step::Done => {}
        Step::Message(delivery) => run_handler(host, delivery),
        Step::Frame(delivery) => run_handler(host, delivery),
    }
    true
}

/// Runs a message or frame handler; a panic ends the channel, not the
/// connection, and an unanswered MSG gets an ERR so the peer is not stuck.
fn run_handler<T>(host: &Dispatcher, d: Delivery<Channel, T, Handler<T>>) {
    let Delivery {
        handler,
        channel,
        item,
        done,
    } = d;
    let handled =
        catch_unwind(AssertUnwindSafe(|| handler(&channel, item))).unwrap_or(Handled::Failed);
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
