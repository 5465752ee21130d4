//! Who reads the socket and who runs handlers.
//!
//! Two interchangeable worker threads per connection share two roles:
//! reading (socket to session) and dispatching (running handlers and
//! callbacks one at a time, in the order they were routed). A worker that
//! has just read messages runs their handlers itself when nobody else is
//! dispatching, and meanwhile the socket stays unread ("parked"): a
//! request/reply round trip then costs the serving side one thread switch
//! instead of two.
//!
//! The socket must never stay unread while a thread waits for the peer
//! (for a reply, for window, or for the peer to drain a socket write):
//! such threads hold a [`PeerWait`] while they wait, which wakes the other
//! worker to read. Every wait of this crate on the peer does; a handler
//! that blocks on something else only delays reading, as a slow handler
//! always delayed the messages behind it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::connection::Action;

thread_local! {
    /// Set while this thread holds the reading role (of its connection:
    /// workers serve one connection each).
    static READING: Cell<bool> = const { Cell::new(false) };
}

/// True while the calling thread reads the socket: it must not block on a
/// write, and the actions it routes are run by itself afterwards.
pub(crate) fn on_reader() -> bool {
    READING.get()
}

/// What a worker does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// Read the socket once and feed the session.
    Read,
    /// Run queued actions until the queue is empty.
    Dispatch,
    /// The connection ended and its last action ran.
    Exit,
}

#[derive(Default)]
struct Roles {
    /// Actions routed and not yet run.
    queue: VecDeque<Action>,
    /// A worker holds the reading role.
    reading: bool,
    /// The reading role is free because its last holder is running the
    /// handlers of what it read; it comes back to reading afterwards, so
    /// nobody needs to take over unless someone waits on the peer.
    parked: bool,
    /// The socket reached its end: nobody reads any more.
    read_closed: bool,
    /// A thread runs actions.
    dispatching: bool,
    /// Threads waiting on the peer ([`PeerWait`]).
    waiting: usize,
    /// Workers asleep on `wake` (notifying nobody costs a syscall).
    idle: usize,
    /// The dispatcher ran [`Action::Exit`].
    exit: bool,
}

impl Roles {
    /// Takes the next free role, if any.
    fn take(&mut self) -> Option<Job> {
        if self.exit {
            return Some(Job::Exit);
        }
        if !self.reading && !self.read_closed && (!self.parked || self.waiting > 0) {
            self.reading = true;
            self.parked = false;
            return Some(Job::Read);
        }
        if !self.dispatching && !self.queue.is_empty() {
            self.dispatching = true;
            return Some(Job::Dispatch);
        }
        None
    }

    /// A role is free that a sleeping worker should take.
    fn unattended(&self) -> bool {
        self.exit
            || (!self.reading && !self.read_closed && (!self.parked || self.waiting > 0))
            || (!self.dispatching && !self.queue.is_empty())
    }
}

/// The roles of one connection's workers, and the action queue.
#[derive(Default)]
pub(crate) struct Workers {
    roles: Mutex<Roles>,
    wake: Condvar,
}

impl Workers {
    fn lock(&self) -> MutexGuard<'_, Roles> {
        // Nothing panics under this lock; recover rather than cascade.
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a sleeping worker if a role is left unattended.
    fn nudge(&self, roles: &Roles) {
        if roles.idle > 0 && roles.unattended() {
            self.wake.notify_one();
        }
    }

    /// Blocks the calling worker until a role is free, and takes it.
    pub(crate) fn next_job(&self) -> Job {
        let roles = self.lock();
        self.wait_job(roles)
    }

    fn wait_job(&self, mut roles: MutexGuard<'_, Roles>) -> Job {
        loop {
            if let Some(job) = roles.take() {
                // Another role may be free too: it is not ours to leave.
                self.nudge(&roles);
                return job;
            }
            roles.idle += 1;
            roles = self.wake.wait(roles).unwrap_or_else(|p| p.into_inner());
            roles.idle -= 1;
        }
    }

    /// Marks the calling thread as the reader (see [`on_reader`]).
    pub(crate) fn reading(&self, on: bool) {
        READING.set(on);
    }

    /// After a read: runs the handlers of what was read on this worker
    /// when nobody dispatches (parking the reading role), else goes on
    /// reading. `closed`: the socket ended, nobody reads again.
    pub(crate) fn after_read(&self, closed: bool) -> Job {
        READING.set(false);
        let mut roles = self.lock();
        roles.read_closed |= closed;
        if roles.exit {
            return Job::Exit;
        }
        if !roles.dispatching && !roles.queue.is_empty() {
            roles.dispatching = true;
            roles.reading = false;
            roles.parked = !roles.read_closed;
            // Someone waits on the peer: the other worker reads meanwhile.
            self.nudge(&roles);
            return Job::Dispatch;
        }
        if !roles.read_closed {
            return Job::Read;
        }
        roles.reading = false;
        self.wait_job(roles)
    }

    /// The next action to run, `None` when the queue is empty (the role is
    /// kept: see [`Workers::after_dispatch`]).
    pub(crate) fn pop(&self) -> Option<Action> {
        self.lock().queue.pop_front()
    }

    /// After a batch of actions (and its flush): more arrived meanwhile,
    /// or the role is given up and the next one taken, the reading role
    /// first when it was parked by this worker.
    pub(crate) fn after_dispatch(&self) -> Job {
        let mut roles = self.lock();
        if roles.exit {
            return Job::Exit;
        }
        if !roles.queue.is_empty() {
            return Job::Dispatch;
        }
        roles.dispatching = false;
        roles.parked = false;
        self.wait_job(roles)
    }

    /// The dispatcher ran [`Action::Exit`]: every worker stops.
    pub(crate) fn exit(&self) {
        let mut roles = self.lock();
        roles.exit = true;
        self.wake.notify_all();
    }

    /// Queues actions. A worker is woken to run them unless one dispatches
    /// already or the caller is the reader (which runs them itself next).
    pub(crate) fn push(&self, actions: impl IntoIterator<Item = Action>) {
        let mut roles = self.lock();
        let before = roles.queue.len();
        roles.queue.extend(actions);
        if roles.queue.len() > before && !on_reader() {
            self.nudge(&roles);
        }
    }

    /// Announces that the caller is about to wait on the peer until the
    /// returned guard drops: the socket is read meanwhile.
    pub(crate) fn waiting_on_peer(&self) -> PeerWait<'_> {
        let mut roles = self.lock();
        roles.waiting += 1;
        self.nudge(&roles);
        PeerWait(self)
    }
}

/// A thread waiting on the peer (see [`Workers::waiting_on_peer`]).
pub(crate) struct PeerWait<'a>(&'a Workers);

impl Drop for PeerWait<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Action {
        Action::Run(Box::new(|| ()))
    }

    #[test]
    fn a_fresh_connection_reads_first() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
    }

    #[test]
    fn the_reader_runs_what_it_read_and_parks_reading() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading(true);
        workers.push([run()]);
        assert_eq!(workers.after_read(false), Job::Dispatch);
        let roles = workers.lock();
        assert!(roles.parked && !roles.reading && roles.dispatching);
        // Nobody waits on the peer: reading is not up for grabs.
        assert!(!roles.unattended());
    }

    #[test]
    fn a_wait_on_the_peer_unparks_reading() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading(true);
        workers.push([run()]);
        assert_eq!(workers.after_read(false), Job::Dispatch);
        let wait = workers.waiting_on_peer();
        assert!(workers.lock().unattended());
        // The other worker would now take reading.
        assert_eq!(workers.lock().take(), Some(Job::Read));
        drop(wait);
        assert!(workers.pop().is_some());
        assert!(workers.pop().is_none());
        // Reading is held by the other worker: this one finds nothing to do
        // until an action is queued.
        workers.push([run()]);
        assert_eq!(workers.after_dispatch(), Job::Dispatch);
    }

    #[test]
    fn the_reader_keeps_reading_while_another_dispatches() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.lock().dispatching = true;
        workers.reading(true);
        workers.push([run()]);
        assert_eq!(workers.after_read(false), Job::Read);
        assert_eq!(workers.lock().queue.len(), 1);
    }

    #[test]
    fn after_dispatch_the_parked_worker_reads_again() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading(true);
        workers.push([run()]);
        assert_eq!(workers.after_read(false), Job::Dispatch);
        assert!(workers.pop().is_some());
        assert_eq!(workers.after_dispatch(), Job::Read);
    }

    #[test]
    fn exit_stops_every_worker() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading(true);
        workers.push([run()]);
        assert_eq!(workers.after_read(true), Job::Dispatch);
        workers.exit();
        assert_eq!(workers.after_dispatch(), Job::Exit);
        assert_eq!(workers.next_job(), Job::Exit);
    }
}
