//! The dispatcher task's queue. Actions are queued under the connection's
//! lock, so they reach the dispatcher in the order they were routed and
//! nothing follows its `Exit`; the task is woken only after the lock is
//! let go, by [`Inbox::wake`]. (A wake-up under the lock sends the woken
//! task, often on another thread, straight into that lock.)

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use beep_proto::dispatch::Action;
use event_listener::Event;

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<Action>>,
    /// Set when actions were queued and the dispatcher not woken yet.
    unannounced: AtomicBool,
    ready: Event,
}

impl Inbox {
    /// Queues `actions` (draining it), in order; wake the dispatcher
    /// with [`Inbox::wake`] once the connection's lock is let go.
    pub(crate) fn push(&self, actions: &mut Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(actions.drain(..));
        self.unannounced.store(true, Ordering::Release);
    }

    /// Wakes the dispatcher if actions were queued since it last was.
    pub(crate) fn wake(&self) {
        if self.unannounced.swap(false, Ordering::AcqRel) {
            self.ready.notify(1);
        }
    }

    /// True while actions wait for the dispatcher.
    pub(crate) fn has_work(&self) -> bool {
        !self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The next action, if one is queued.
    pub(crate) fn pop(&self) -> Option<Action> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// The next action, once one is queued.
    pub(crate) async fn next(&self) -> Action {
        loop {
            if let Some(action) = self.pop() {
                return action;
            }
            // Listen, then look again: a wake-up in between is not lost.
            let listener = self.ready.listen();
            if let Some(action) = self.pop() {
                return action;
            }
            listener.await;
        }
    }
}
