//! The stream's writing half, shared by every task of a connection.
//!
//! Whichever task produced output (an application task sending, the
//! dispatcher answering, the reader granting window) writes it at once
//! if the stream takes it: handing it to the writer task instead costs a
//! task wake-up, often on another thread, per message. Only what the
//! stream does not take at once is left to the writer task, which waits
//! until the stream is writable. Output leaves in the order the session
//! produced it: it is taken from the session and written under one lock,
//! and whatever a write left over goes first next time.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_io::AsyncWrite;
use futures_util::io::WriteHalf;

use crate::runtime::Transport;
use crate::shared::Shared;

/// The most slices one vectored write is given (Linux takes 1024).
const MAX_SLICES: usize = 64;

/// The writing half and the output taken from the session but not yet
/// written. Behind [`Shared::writer`](crate::shared::Shared), locked
/// only while a task polls it, never across an await.
#[derive(Default)]
pub(crate) struct Writer {
    half: Option<WriteHalf<Box<dyn Transport>>>,
    unwritten: VecDeque<Bytes>,
}

impl Writer {
    /// Gives the writer its half of the stream.
    pub(crate) fn attach(&mut self, half: WriteHalf<Box<dyn Transport>>) {
        self.half = Some(half);
    }

    /// Drops the half (the stream closes once the reader's half is gone
    /// too) and what was not written: the connection is over.
    pub(crate) fn detach(&mut self) {
        self.half = None;
        self.unwritten.clear();
    }

    /// Writes what is left over, then the session's output, until the
    /// session has none (`Ready(Ok)`) or the stream takes no more
    /// (`Pending`: `cx` is woken when it may).
    pub(crate) fn poll_flush_out(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(half) = self.half.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        // Whether the session may have more than was taken. Output a task
        // adds while this one writes is not missed without a second look:
        // that task finds the writer busy and wakes the writer task.
        let mut more = true;
        loop {
            if self.unwritten.is_empty() {
                if !more {
                    return Poll::Ready(Ok(()));
                }
                let mut chunks = Vec::new();
                more = shared.take_output(&mut chunks);
                if chunks.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                self.unwritten.extend(chunks);
            }
            let written = if self.unwritten.len() == 1 {
                Pin::new(&mut *half).poll_write(cx, &self.unwritten[0])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(&self.unwritten) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                }
                Pin::new(&mut *half).poll_write_vectored(cx, &slices[..count])
            };
            match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => advance(&mut self.unwritten, n),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Closes our sending half, once everything is written.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.half.as_mut() {
            Some(half) => Pin::new(half).poll_close(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Drops `n` written octets from the front of `unwritten`.
fn advance(unwritten: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = unwritten.front_mut() else {
            return;
        };
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        unwritten.pop_front();
    }
}
