//! The reader and writer tasks of a connection, written against
//! `futures-io` only.

use std::io::IoSlice;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use beep_proto::Role;
use bytes::Bytes;
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::future::{Either, select};
use futures_util::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::error::CloseReason;
use crate::runtime::{self, Transport};
use crate::shared::{Action, Shared};

type Stream = Box<dyn Transport>;

/// Read buffer per connection: one read can carry a whole transmit batch.
const READ_BUFFER: usize = 64 * 1024;

/// Starts the reader, the writer and the handler dispatcher.
pub(crate) fn spawn(shared: &Arc<Shared>, stream: Stream, inbox: UnboundedReceiver<Action>) {
    // The halves share the stream through a lock held only while one of
    // them is polled, so this works for any runtime's stream.
    let (reader, writer) = stream.split();
    let runtime = &shared.runtime;
    runtime.spawn(Box::pin(read_loop(shared.clone(), reader)));
    runtime.spawn(Box::pin(write_loop(shared.clone(), writer)));
    runtime.spawn(Box::pin(crate::dispatch::run(shared.clone(), inbox)));
}

/// Stream to session. Never waits on anything but the stream and the
/// session lock, so SEQ frames and replies keep flowing whatever the
/// handlers do. Stops when the connection ends, whoever ended it; after a
/// release, once it has drained the stream (see [`drain_after_release`]).
/// As the listener it also keeps the greeting timeout (see
/// [`until_ended`]).
async fn read_loop(shared: Arc<Shared>, mut reader: ReadHalf<Stream>) {
    let mut buf = vec![0u8; READ_BUFFER];
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
            Either::Left((Ok(n), _)) => n,
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
    }
    drain_after_release(&shared, &mut reader, &mut buf).await;
}

/// Why a listener ends a connection whose peer did not greet within
/// `limit` ([`Options::greeting_timeout`](crate::Options::greeting_timeout)).
fn no_greeting(limit: Duration) -> CloseReason {
    CloseReason::Lost(format!("no greeting within {} s", limit.as_secs_f64()))
}

/// Completes once the connection has ended. As the listener, it first
/// ends the connection itself if the peer has not greeted within the
/// greeting timeout: the timer runs in the reader, with no task of its
/// own.
async fn until_ended(shared: &Shared) {
    let role = shared.lock().core.session().role();
    if role == Role::Listener {
        let limit = shared.options.greeting_timeout;
        let ended = shared.wait_flag(&shared.ended);
        if runtime::timeout(&*shared.runtime, limit, ended)
            .await
            .is_none()
        {
            let greeted = shared.lock().core.session().peer_greeting().is_some();
            if !greeted {
                shared.finish(no_greeting(limit));
            }
        }
    }
    shared.wait_flag(&shared.ended).await;
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

/// Session to stream. A released session flushes its last bytes (the
/// final `<ok/>`) and closes the stream, within the release timeout from
/// the end (a peer that stops reading must not keep the task and the
/// socket for ever); any other end drops it at once, even in the middle of
/// a write to a peer that stopped reading.
async fn write_loop(shared: Arc<Shared>, mut writer: WriteHalf<Stream>) {
    let give_up = pin!(async {
        shared.wait_flag(&shared.ended).await;
        runtime::sleep(&*shared.runtime, shared.options.release_timeout).await;
    });
    let aborted = pin!(shared.wait_flag(&shared.aborted));
    let mut stop = select(aborted, give_up);
    let mut chunks = Vec::new();
    loop {
        let (mut more, mut ended) = take_output(&shared, &mut chunks);
        if !more && !ended {
            // Listen, then look again, so a wake-up in between is not lost.
            let wake = shared.output.listen();
            (more, ended) = take_output(&shared, &mut chunks);
            if !more && !ended {
                wake.await;
                continue;
            }
        }
        if ended {
            let _ = select(pin!(flush_last(&shared, &mut writer, chunks)), stop).await;
            return;
        }
        let written = match select(pin!(write_chunks(&mut writer, &chunks)), &mut stop).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => return,
        };
        if let Err(e) = written {
            shared.finish(CloseReason::Lost(e.to_string()));
            return;
        }
        chunks.clear();
    }
}

/// Appends the session's next output to `chunks`: true if there was some,
/// and true once the session has ended (the output then is the last there
/// will be).
fn take_output(shared: &Shared, chunks: &mut Vec<Bytes>) -> (bool, bool) {
    let mut actions = Vec::new();
    let (more, done) = {
        let mut st = shared.lock();
        let more = st.poll_transmit_vectored(chunks);
        // poll_transmit can end a session (the last <ok/> left).
        shared.route(&mut st, &mut actions);
        let done = st.core.ended().is_some() || st.core.session().is_ended();
        (more, done)
    };
    // Taking bytes made room: wake senders waiting for it (not the writer:
    // that is the caller).
    shared.after(actions, false);
    (more, done)
}

/// Writes `chunks` and whatever else an ended session still has (its final
/// `<ok/>`), then closes our sending half (the reader drains the rest: see
/// [`drain_after_release`]).
async fn flush_last(shared: &Shared, writer: &mut WriteHalf<Stream>, mut chunks: Vec<Bytes>) {
    while !chunks.is_empty() {
        if write_chunks(writer, &chunks).await.is_err() {
            return;
        }
        chunks.clear();
        take_output(shared, &mut chunks);
    }
    let _ = writer.close().await;
}

/// Writes `chunks` in order with vectored writes (large payloads go to the
/// stream from the application's own buffers).
async fn write_chunks(writer: &mut WriteHalf<Stream>, chunks: &[Bytes]) -> std::io::Result<()> {
    if let [only] = chunks {
        return writer.write_all(only).await;
    }
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match writer.write_vectored(left).await {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
