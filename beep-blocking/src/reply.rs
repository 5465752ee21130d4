//! One result for one blocked thread: what [`crate::connection::wait`]
//! waits on. A channel (`mpsc::sync_channel(1)`) did this before, with a
//! second allocation for the waiter's [`Ticket`], and cost about a tenth
//! of the instructions of a whole request's round trip on loopback; this
//! is one allocation, one lock to hand the result over, and a wake-up
//! only for a thread that sleeps.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use beep_proto::dispatch::Done;

use crate::error::{CloseReason, Error};
use crate::roles::Ticket;

/// What both ends share.
struct Slot {
    /// The waiter's bookkeeping with the workers (see `roles`).
    ticket: Ticket,
    state: Mutex<State>,
    filled: Condvar,
}

#[derive(Default)]
struct State {
    result: Option<Result<Done, Error>>,
    /// The sending end was dropped without a result: the connection went.
    abandoned: bool,
    /// The waiter sleeps on `filled`.
    sleeping: bool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock; recover rather than cascade.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending end, held by the session layer until the result is there.
pub(crate) struct Sender(Option<Arc<Slot>>);

impl Sender {
    /// Hands the result over, then tells the workers with the ticket
    /// (`answered`), in that order: a waiter that sees its ticket
    /// answered finds the result.
    pub(crate) fn send(mut self, result: Result<Done, Error>, answered: impl FnOnce(&Ticket)) {
        if let Some(slot) = self.0.take() {
            {
                let mut state = slot.lock();
                state.result = Some(result);
                if state.sleeping {
                    slot.filled.notify_one();
                }
            }
            answered(&slot.ticket);
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let mut state = slot.lock();
            state.abandoned = true;
            if state.sleeping {
                slot.filled.notify_one();
            }
        }
    }
}

/// The waiting end.
pub(crate) struct Receiver(Arc<Slot>);

/// A result slot: its sending and waiting ends.
pub(crate) fn pair() -> (Sender, Receiver) {
    let slot = Arc::new(Slot {
        ticket: Ticket::default(),
        state: Mutex::new(State::default()),
        filled: Condvar::new(),
    });
    (Sender(Some(slot.clone())), Receiver(slot))
}

impl Receiver {
    /// The waiter's ticket (see [`crate::roles::Workers::enter_wait`]).
    pub(crate) fn ticket(&self) -> &Ticket {
        &self.0.ticket
    }

    /// The result if it is there; a closed connection if it never will be.
    pub(crate) fn try_take(&self) -> Option<Result<Done, Error>> {
        let mut state = self.0.lock();
        Self::taken(&mut state)
    }

    /// Sleeps until the result is there, at most `left` (for ever with
    /// `None`); [`Error::Timeout`] when it runs out.
    pub(crate) fn take_within(&self, left: Option<Duration>) -> Result<Done, Error> {
        let deadline = left.and_then(|left| Instant::now().checked_add(left));
        let mut state = self.0.lock();
        loop {
            if let Some(result) = Self::taken(&mut state) {
                return result;
            }
            state.sleeping = true;
            state = match deadline {
                None => self.0.filled.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sleeping = false;
                        return Err(Error::Timeout);
                    }
                    let waited = self.0.filled.wait_timeout(state, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
            };
            state.sleeping = false;
        }
    }

    fn taken(state: &mut State) -> Option<Result<Done, Error>> {
        match state.result.take() {
            Some(result) => Some(result),
            None if state.abandoned => Some(Err(Error::Closed(CloseReason::Shutdown))),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_result_is_taken_once_and_the_ticket_told_after_it() {
        let (tx, rx) = pair();
        assert!(rx.try_take().is_none());
        let mut in_place_when_told = false;
        tx.send(Err(Error::Timeout), |_| {
            in_place_when_told = rx.0.lock().result.is_some();
        });
        assert!(in_place_when_told, "a waiter told first would find nothing");
        assert!(matches!(rx.try_take(), Some(Err(Error::Timeout))));
        // One result per wait: nothing more, and not "closed" either.
        assert!(rx.try_take().is_none());
    }

    #[test]
    fn a_dropped_sender_wakes_the_sleeper_with_closed() {
        let (tx, rx) = pair();
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        let result = rx.take_within(None);
        dropper.join().unwrap();
        assert!(matches!(result, Err(Error::Closed(CloseReason::Shutdown))));
    }

    #[test]
    fn a_sleeper_gets_a_result_sent_from_another_thread() {
        let (tx, rx) = pair();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(Err(Error::ChannelClosed), |_| {});
        });
        let result = rx.take_within(Some(Duration::from_secs(10)));
        sender.join().unwrap();
        assert!(matches!(result, Err(Error::ChannelClosed)));
    }

    #[test]
    fn nothing_sent_times_out() {
        let (_tx, rx) = pair();
        let result = rx.take_within(Some(Duration::from_millis(10)));
        assert!(matches!(result, Err(Error::Timeout)));
    }
}
