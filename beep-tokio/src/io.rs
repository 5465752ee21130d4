//! The reader and writer tasks of a connection, written against
//! `futures-io` only.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use beep_proto::Role;
use futures_util::future::{Either, select};
use futures_util::io::{AsyncReadExt, ReadHalf};

use crate::error::CloseReason;
use crate::runtime::{self, Transport};
use crate::shared::Shared;

type Stream = Box<dyn Transport>;

/// Read buffer per connection: one read can carry a whole transmit batch.
const READ_BUFFER: usize = 64 * 1024;

/// How much the reader reads in full reads without a pause before it lets
/// the dispatcher catch up (see `read_loop`): four full reads, about four
/// 64 KiB messages waiting for their handlers at most. (A pause after
/// every full read cost a quarter of the one-core pipelined rate.)
const YIELD_AFTER: usize = 4 * READ_BUFFER;

/// Starts the reader, the writer and the handler dispatcher.
pub(crate) fn spawn(shared: &Arc<Shared>, stream: Stream) {
    // The halves share the stream through a lock held only while one of
    // them is polled, so this works for any runtime's stream.
    let (reader, writer) = stream.split();
    shared.lock_writer().attach(writer);
    let runtime = &shared.runtime;
    runtime.spawn(Box::pin(read_loop(shared.clone(), reader)));
    runtime.spawn(Box::pin(write_loop(shared.clone())));
    runtime.spawn(Box::pin(crate::dispatch::run(shared.clone())));
}

/// Stream to session. Never waits on anything but the stream and the
/// session lock, so SEQ frames and replies keep flowing whatever the
/// handlers do. Stops when the connection ends, whoever ended it; after a
/// release, once it has drained the stream (see [`drain_after_release`]).
/// As the listener it also keeps the greeting timeout (see
/// [`until_ended`]).
async fn read_loop(shared: Arc<Shared>, mut reader: ReadHalf<Stream>) {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut streak = 0;
    let mut ended = pin!(until_ended(&shared));
    loop {
        let read = reader.read(&mut buf);
        let n = match select(read, ended.as_mut()).await {
            Either::Right(_) => break,
            Either::Left((Ok(0), _)) => {
                shared.eof();
                // A release the peer asked for just before closing its
                // side waits for our answer; if that never comes (or our
                // <ok/> cannot go out), give up after the release timeout.
                let limit = shared.options.release_timeout;
                let _ = crate::runtime::timeout(&*shared.runtime, limit, ended).await;
                shared.finish(CloseReason::Lost("the peer closed the connection".into()));
                return;
            }
            Either::Left((Ok(n), _)) => {
                shared.activity.touch(std::time::Instant::now);
                n
            }
            Either::Left((Err(e), _)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Either::Left((Err(e), _)) => {
                shared.finish(CloseReason::Lost(e.to_string()));
                return;
            }
        };
        let mut actions = Vec::new();
        let (done, transmit) = {
            let mut st = shared.lock();
            shared.input(&mut st, &buf[..n], &mut actions);
            (st.core.ended().is_some(), crate::shared::wants_writer(&st))
        };
        shared.after(actions, transmit);
        if done {
            break;
        }
        // Full reads in a row: the socket keeps more waiting.
        streak = if n == buf.len() { streak + n } else { 0 };
        if streak >= YIELD_AFTER && shared.inbox.has_work() {
            // Let the dispatcher handle what was read before reading on.
            // Reading while it waited piled megabytes of messages up on
            // one worker, which the allocator then gave back to the
            // system and faulted in again, in turns (see the README's
            // loopback notes).
            streak = 0;
            shared.runtime.yield_now().await;
        }
    }
    drain_after_release(&shared, &mut reader, &mut buf).await;
}

/// Why a listener ends a connection whose peer did not greet within
/// `limit` ([`Options::greeting_timeout`](crate::Options::greeting_timeout)).
fn no_greeting(limit: Duration) -> CloseReason {
    CloseReason::Lost(format!("no greeting within {} s", limit.as_secs_f64()))
}

/// Completes once the connection has ended. Meanwhile it keeps the
/// greeting timeout (as the listener) and the idle timeout: the timers run
/// in the reader, with no task of their own.
async fn until_ended(shared: &Shared) {
    let greeting = pin!(end_without_greeting(shared));
    let idle = pin!(end_when_idle(shared));
    let ended = pin!(shared.wait_flag(&shared.ended));
    let _ = select(select(greeting, idle), ended).await;
}

/// As the listener, ends the connection if the peer has not greeted
/// within the greeting timeout. Never completes otherwise.
async fn end_without_greeting(shared: &Shared) {
    let role = shared.lock().core.session().role();
    if role == Role::Listener {
        let limit = shared.options.greeting_timeout;
        // TLS starts the session over (RFC 3080 3.1.3.2) and the peer owes
        // a greeting again, over TLS: a look every `limit` finds a peer
        // that has not greeted since the previous look (the reset came
        // between them), so its handshake and new greeting get at most
        // two periods, and a peer that asks for TLS and goes silent is not
        // kept for ever. One timer per period, not a wake-up per message.
        let mut looks_without_greeting = 0;
        loop {
            runtime::sleep(&*shared.runtime, limit).await;
            let (greeted, tls) = {
                let st = shared.lock();
                let session = st.core.session();
                (session.peer_greeting().is_some(), session.is_tls_active())
            };
            if greeted {
                looks_without_greeting = 0;
                if tls {
                    break; // the greeting over TLS is in: nothing more owed
                }
                continue;
            }
            looks_without_greeting += 1;
            // Before TLS the first look is the deadline; after the reset,
            // the second (the reset fell somewhere in the first period).
            if !tls || looks_without_greeting > 1 {
                shared.finish(no_greeting(limit));
                break;
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Ends the connection once it has been idle for
/// [`Options::idle_timeout`](crate::Options::idle_timeout): nothing moved
/// and nothing under way. Never completes otherwise.
async fn end_when_idle(shared: &Shared) {
    loop {
        let Some(due) = shared.activity.idle_at() else {
            // No idle timeout (or one too long for a clock).
            std::future::pending::<()>().await;
            return;
        };
        let left = due.saturating_duration_since(std::time::Instant::now());
        if !left.is_zero() {
            runtime::sleep(&*shared.runtime, left).await;
            continue;
        }
        if shared.lock().core.session().is_quiet() {
            shared.finish(shared.activity.reason());
            return;
        }
        // Something is under way (a handler working on its reply, the
        // peer on ours): not idle; look again a period later.
        shared.activity.touch(std::time::Instant::now);
    }
}

/// After a release, the writer flushes everything (the final `<ok/>` too)
/// and closes only our sending half (`poll_close`: a TCP stream of tokio
/// or async-std shuts down its write side); meanwhile this reads what the
/// peer still sends (SEQ frames for the replies it is reading), and
/// discards it, until the peer closes, so that closing finds no unread
/// input. Closing with unread input makes the kernel reset the
/// connection, which can discard replies the peer has received but not
/// read yet. Bounded by the release timeout, and stopped by
/// [`Connection::shutdown`](crate::Connection::shutdown). As
/// beep-blocking's writer does.
async fn drain_after_release(shared: &Shared, reader: &mut ReadHalf<Stream>, buf: &mut [u8]) {
    if shared.lock().core.ended() != Some(&CloseReason::Released) {
        return;
    }
    let drain = pin!(async {
        loop {
            match reader.read(buf).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    let aborted = pin!(shared.wait_flag(&shared.aborted));
    let limit = shared.options.release_timeout;
    let _ = runtime::timeout(&*shared.runtime, limit, select(drain, aborted)).await;
}

/// Session to stream, for what the tasks that produced output could not
/// write at once (see [`crate::writer`]): waits until the stream takes
/// it. A released session flushes its last bytes (the final `<ok/>`) and
/// closes our sending half, within the release timeout from the end (a
/// peer that stops reading must not keep the task and the socket for
/// ever); any other end drops the stream at once, even in the middle of a
/// write to a peer that stopped reading.
async fn write_loop(shared: Arc<Shared>) {
    /// However the task ends, the connection's half of the stream goes
    /// with it: handles that outlive the connection do not keep it open.
    struct Detach<'a>(&'a Shared);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            self.0.lock_writer().detach();
        }
    }
    let _detach = Detach(&shared);
    let give_up = pin!(async {
        shared.wait_flag(&shared.ended).await;
        runtime::sleep(&*shared.runtime, shared.options.release_timeout).await;
    });
    let aborted = pin!(shared.wait_flag(&shared.aborted));
    let mut stop = select(aborted, give_up);
    loop {
        // Listen, then look, so a wake-up in between is not lost. A task
        // that writes directly wakes this one after each write the stream
        // did not take whole, also in the middle of a flush: its write may
        // have replaced this task's waker (in the stream's registration,
        // or in the lock the halves share) by one that wakes nobody, so
        // the flush is polled again with this task's own.
        let wake = shared.output.listen();
        let flushed = pin!(poll_fn(|cx| shared
            .lock_writer()
            .poll_flush_out(&shared, cx)));
        let rest = match select(flushed, select(wake, &mut stop)).await {
            Either::Left((Ok(()), rest)) => rest,
            Either::Left((Err(e), _)) => {
                shared.finish(CloseReason::Lost(e.to_string()));
                return;
            }
            Either::Right((Either::Left(_), _)) => continue,
            Either::Right((Either::Right(_), _)) => return,
        };
        let ended = {
            let st = shared.lock();
            st.core.ended().is_some() || st.core.session().is_ended()
        };
        if ended {
            drop(rest);
            // The session may have ended after the flush above, with its
            // last output (the final <ok/>) queued in between: flush again
            // (nothing can be added after the end), then end our sending
            // half; the reader drains the rest (see drain_after_release).
            let closed = async {
                let flushed = poll_fn(|cx| shared.lock_writer().poll_flush_out(&shared, cx));
                if flushed.await.is_ok() {
                    let _ = poll_fn(|cx| shared.lock_writer().poll_close(cx)).await;
                }
            };
            let _ = select(pin!(closed), &mut stop).await;
            return;
        }
        if let Either::Right(_) = rest.await {
            return;
        }
    }
}
