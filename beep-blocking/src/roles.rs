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
//!
//! A thread waiting for a reply reads the socket itself only with a
//! deadline (a read timeout): a transport without read timeouts (see
//! [`Workers::new`]) is read by the workers alone, and every reply is
//! handed over to its waiter; the role is then never reserved.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::Action;

/// How long the reading role may stay reserved for application threads
/// (see [`Workers::enter_wait`]) before a worker takes it back.
pub(crate) const APP_RESERVE: Duration = Duration::from_millis(5);

/// Who reads, as seen by the reading thread itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// A worker: it runs what it routed itself afterwards.
    Worker,
    /// An application thread waiting for a reply.
    App,
}

thread_local! {
    /// Set while this thread holds the reading role (of one connection:
    /// workers serve one connection each, and an application thread
    /// reads for one wait at a time).
    static READING: Cell<Option<Reader>> = const { Cell::new(None) };
    /// Replies handed to waiting threads by this thread's current read
    /// ([`Workers::answered`]).
    static DELIVERED: Cell<usize> = const { Cell::new(0) };
}

/// True while the calling thread reads the socket: it must not block on a
/// write (nobody else would read what the peer needs to see first).
pub(crate) fn on_reader() -> bool {
    READING.get().is_some()
}

/// True while the calling thread reads for its own wait.
pub(crate) fn reads_for_app() -> bool {
    READING.get() == Some(Reader::App)
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

/// How a thread waits for a reply (see [`Workers::enter_wait`]).
pub(crate) enum Wait<'a> {
    /// It reads the socket itself until the reply is there, then calls
    /// [`Workers::leave_read`].
    Read,
    /// The reply was handed over already.
    Ready,
    /// Someone else reads: it blocks until the reply is handed over.
    Blocked(ReplyWait<'a>),
}

/// One thread's wait for one reply, shared with whoever hands the reply
/// over, so the reader knows when every waiter has its reply. Both flags
/// change only under the roles lock.
#[derive(Default)]
pub(crate) struct Ticket {
    /// The waiter blocked and counts in `Roles::unanswered`.
    blocked: AtomicBool,
    /// The reply was handed over.
    answered: AtomicBool,
}

#[derive(Default)]
struct Roles {
    /// Application threads may read (the transport has read timeouts).
    app_reads: bool,
    /// Actions routed and not yet run.
    queue: VecDeque<Action>,
    /// A thread holds the reading role.
    reading: bool,
    /// ... and it is an application thread.
    app_reading: bool,
    /// The reading role is free because its last holder is running the
    /// handlers of what it read; it comes back to reading afterwards, so
    /// nobody needs to take over unless someone waits on the peer.
    parked: bool,
    /// The reading role is free and kept for the application thread that
    /// will wait for its next reply and read it itself; a worker takes it
    /// back after [`APP_RESERVE`].
    reserved: Option<Instant>,
    /// A sleeping worker times the reservation.
    timing: bool,
    /// The socket reached its end: nobody reads any more.
    read_closed: bool,
    /// A thread runs actions.
    dispatching: bool,
    /// Threads waiting on the peer for room or a socket write
    /// ([`PeerWait`]).
    waiting: usize,
    /// Threads blocked until a reply is handed to them ([`ReplyWait`]),
    /// whose reply has not been handed over yet.
    unanswered: usize,
    /// Workers asleep on `wake` (notifying nobody costs a syscall).
    idle: usize,
    /// The dispatcher ran [`Action::Exit`].
    exit: bool,
}

impl Roles {
    /// The reading role is free and a worker should take it.
    fn read_unattended(&self, now: Option<Instant>) -> bool {
        if self.reading || self.read_closed {
            return false;
        }
        if self.waiting > 0 || self.unanswered > 0 {
            return true;
        }
        if self.parked {
            return false;
        }
        match (self.reserved, now) {
            (None, _) => true,
            (Some(since), Some(now)) => now >= since + APP_RESERVE,
            (Some(_), None) => false,
        }
    }

    /// Takes the next free role, if any.
    fn take(&mut self, now: Option<Instant>) -> Option<Job> {
        if self.exit {
            return Some(Job::Exit);
        }
        if self.read_unattended(now) {
            self.take_read(false);
            return Some(Job::Read);
        }
        if !self.dispatching && !self.queue.is_empty() {
            self.dispatching = true;
            return Some(Job::Dispatch);
        }
        None
    }

    fn take_read(&mut self, app: bool) {
        self.reading = true;
        self.app_reading = app;
        self.parked = false;
        self.reserved = None;
    }

    /// A role is free that a sleeping worker should take now.
    fn unattended(&self) -> bool {
        self.exit || self.read_unattended(None) || (!self.dispatching && !self.queue.is_empty())
    }

    /// Application threads read or hold the reading role reserved: a
    /// sleeping worker has to time the reservation.
    fn app_owned(&self) -> bool {
        self.app_reading || self.reserved.is_some()
    }

    /// Frees the reading role, reserving it for the next application
    /// wait when nothing else needs reading: no waiter, no handler work.
    fn release_read(&mut self, reserve: bool) {
        self.reading = false;
        self.app_reading = false;
        let quiet =
            self.waiting == 0 && self.unanswered == 0 && !self.dispatching && self.queue.is_empty();
        if reserve && quiet && !self.read_closed {
            self.reserved = Some(Instant::now());
        }
    }
}

/// The roles of one connection's workers, and the action queue.
pub(crate) struct Workers {
    roles: Mutex<Roles>,
    wake: Condvar,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::new(true)
    }
}

impl Workers {
    /// Roles for a connection whose waiting application threads may read
    /// the socket themselves (`app_reads`: only when reads can time out,
    /// or a waiter would read past its deadline, or for ever).
    pub(crate) fn new(app_reads: bool) -> Self {
        Workers {
            roles: Mutex::new(Roles {
                app_reads,
                ..Roles::default()
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Roles> {
        // Nothing panics under this lock; recover rather than cascade.
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a sleeping worker if a role is left unattended, or if nobody
    /// times a reservation (the worker timing it may have been woken for
    /// other work).
    fn nudge(&self, roles: &Roles) {
        if roles.idle > 0 && (roles.unattended() || (roles.app_owned() && !roles.timing)) {
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
            let now = roles.reserved.map(|_| Instant::now());
            if let Some(job) = roles.take(now) {
                // Another role may be free too: it is not ours to leave.
                self.nudge(&roles);
                return job;
            }
            roles.idle += 1;
            if roles.app_owned() && !roles.timing {
                // One worker looks again when the reservation may have
                // run out (and while an application thread reads, every
                // so often, for the reservation that follows).
                roles.timing = true;
                let left = match (roles.reserved, now) {
                    (Some(since), Some(now)) => {
                        (since + APP_RESERVE).saturating_duration_since(now)
                    }
                    _ => APP_RESERVE,
                };
                let waited = self.wake.wait_timeout(roles, left);
                roles = waited.unwrap_or_else(|p| p.into_inner()).0;
                roles.timing = false;
            } else {
                roles = self.wake.wait(roles).unwrap_or_else(|p| p.into_inner());
            }
            roles.idle -= 1;
        }
    }

    /// Marks the calling worker as the reader (see [`on_reader`]).
    pub(crate) fn reading(&self) {
        READING.set(Some(Reader::Worker));
        DELIVERED.set(0);
    }

    /// After a read: runs the handlers of what was read on this worker
    /// when nobody dispatches (parking the reading role), else goes on
    /// reading. When the read only handed replies to every thread
    /// waiting for one, the role is reserved for them instead: the next
    /// request's waiter reads its reply itself, sparing a thread switch.
    /// `closed`: the socket ended, nobody reads again.
    pub(crate) fn after_read(&self, closed: bool) -> Job {
        READING.set(None);
        let delivered = DELIVERED.replace(0);
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
        let answered_all = delivered > 0 && roles.unanswered == 0 && roles.app_reads;
        if !roles.read_closed && !answered_all {
            return Job::Read;
        }
        roles.release_read(answered_all);
        self.nudge(&roles);
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
    /// already or the caller is the reading worker (which runs them itself
    /// next).
    /// Leaves `actions` empty (its allocation kept); nothing is locked
    /// when there is nothing to queue, as after most session calls.
    pub(crate) fn push(&self, actions: &mut Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        let mut roles = self.lock();
        roles.queue.extend(actions.drain(..));
        if READING.get() != Some(Reader::Worker) {
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

    /// A thread is about to wait for a reply: it reads the socket itself
    /// when nobody does and it may (the reply then costs no thread
    /// switch), else it waits for the reader to hand it over.
    pub(crate) fn enter_wait<'a>(&'a self, ticket: &'a Ticket) -> Wait<'a> {
        let mut roles = self.lock();
        // First: reading for a reply that is there would wait for nothing.
        if ticket.answered.load(Ordering::Relaxed) {
            return Wait::Ready;
        }
        if roles.app_reads && !roles.reading && !roles.read_closed && !roles.exit {
            roles.take_read(true);
            READING.set(Some(Reader::App));
            return Wait::Read;
        }
        ticket.blocked.store(true, Ordering::Relaxed);
        roles.unanswered += 1;
        self.nudge(&roles);
        Wait::Blocked(ReplyWait {
            workers: self,
            ticket,
        })
    }

    /// A reply was handed to the thread holding `ticket`.
    pub(crate) fn answered(&self, ticket: &Ticket) {
        let mut roles = self.lock();
        ticket.answered.store(true, Ordering::Relaxed);
        if ticket.blocked.swap(false, Ordering::Relaxed) {
            roles.unanswered -= 1;
        }
        DELIVERED.set(DELIVERED.get() + 1);
    }

    /// An application thread stops reading (its reply arrived, its wait
    /// timed out, or the socket ended). Others waiting get a worker to
    /// read for them; otherwise the role stays reserved for the next
    /// application wait.
    pub(crate) fn leave_read(&self, closed: bool) {
        READING.set(None);
        let mut roles = self.lock();
        roles.read_closed |= closed;
        roles.release_read(true);
        // Also wakes a worker to time the reservation, if nobody does.
        self.nudge(&roles);
    }
}

/// A thread waiting on the peer (see [`Workers::waiting_on_peer`]).
pub(crate) struct PeerWait<'a>(&'a Workers);

impl Drop for PeerWait<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

/// A thread blocked until its reply is handed over (see
/// [`Workers::enter_wait`]); it stops counting when it gives up.
pub(crate) struct ReplyWait<'a> {
    workers: &'a Workers,
    ticket: &'a Ticket,
}

impl Drop for ReplyWait<'_> {
    fn drop(&mut self) {
        let mut roles = self.workers.lock();
        if self.ticket.blocked.swap(false, Ordering::Relaxed) {
            roles.unanswered -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Action {
        Action::Run(Box::new(|| ()))
    }

    /// A worker that read one message and now runs its handler.
    fn reading_then_dispatching() -> Workers {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading();
        workers.push(&mut vec![run()]);
        assert_eq!(workers.after_read(false), Job::Dispatch);
        workers
    }

    #[test]
    fn a_fresh_connection_reads_first() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
    }

    #[test]
    fn the_reader_runs_what_it_read_and_parks_reading() {
        let workers = reading_then_dispatching();
        let roles = workers.lock();
        assert!(roles.parked && !roles.reading && roles.dispatching);
        // Nobody waits on the peer: reading is not up for grabs.
        assert!(!roles.unattended());
    }

    #[test]
    fn a_wait_on_the_peer_unparks_reading() {
        let workers = reading_then_dispatching();
        let wait = workers.waiting_on_peer();
        assert!(workers.lock().unattended());
        // The other worker would now take reading.
        assert_eq!(workers.lock().take(None), Some(Job::Read));
        drop(wait);
        assert!(workers.pop().is_some());
        assert!(workers.pop().is_none());
        // Reading is held by the other worker: this one finds nothing to do
        // until an action is queued.
        workers.push(&mut vec![run()]);
        assert_eq!(workers.after_dispatch(), Job::Dispatch);
    }

    #[test]
    fn a_reply_waiter_reads_a_parked_socket_itself() {
        let workers = reading_then_dispatching();
        let ticket = Ticket::default();
        assert!(matches!(workers.enter_wait(&ticket), Wait::Read));
        assert!(reads_for_app());
        workers.leave_read(false);
        assert!(!on_reader());
        // A handler is still running: the role is free, not reserved, and
        // its worker takes it back when done.
        assert!(workers.lock().reserved.is_none());
        assert!(workers.pop().is_some());
        assert_eq!(workers.after_dispatch(), Job::Read);
    }

    #[test]
    fn the_reader_keeps_reading_while_another_dispatches() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.lock().dispatching = true;
        workers.reading();
        workers.push(&mut vec![run()]);
        assert_eq!(workers.after_read(false), Job::Read);
        assert_eq!(workers.lock().queue.len(), 1);
    }

    #[test]
    fn after_dispatch_the_parked_worker_reads_again() {
        let workers = reading_then_dispatching();
        assert!(workers.pop().is_some());
        assert_eq!(workers.after_dispatch(), Job::Read);
    }

    #[test]
    fn a_worker_that_answered_every_waiter_reserves_reading_for_them() {
        let workers = std::sync::Arc::new(Workers::default());
        assert_eq!(workers.next_job(), Job::Read);
        let ticket = std::sync::Arc::new(Ticket::default());
        let Wait::Blocked(wait) = workers.enter_wait(&ticket) else {
            panic!("a worker reads: the waiter must block");
        };
        // The worker's read hands the only waiter its reply.
        let worker = {
            let (workers, ticket) = (workers.clone(), ticket.clone());
            std::thread::spawn(move || {
                workers.reading();
                workers.answered(&ticket);
                let reserved_at = Instant::now();
                // It sleeps until the reservation runs out, then reads.
                (workers.after_read(false), reserved_at.elapsed())
            })
        };
        while workers.lock().reserved.is_none() {
            std::thread::yield_now();
        }
        drop(wait);
        // Meanwhile the next wait reads itself, and reserves the role again.
        let next = Ticket::default();
        assert!(matches!(workers.enter_wait(&next), Wait::Read));
        workers.leave_read(false);
        assert!(workers.lock().reserved.is_some());
        let (job, slept) = worker.join().unwrap();
        assert_eq!(job, Job::Read);
        assert!(slept >= APP_RESERVE, "took the role back after {slept:?}");
    }

    #[test]
    fn an_unanswered_waiter_keeps_reading_unreserved() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        let (first, second) = (Ticket::default(), Ticket::default());
        let _a = workers.enter_wait(&first);
        let _b = workers.enter_wait(&second);
        workers.reading();
        workers.answered(&first);
        // One reply is still due: the worker goes on reading.
        assert_eq!(workers.after_read(false), Job::Read);
        assert_eq!(workers.lock().unanswered, 1);
    }

    #[test]
    fn a_waiter_whose_reply_came_first_does_not_block() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        let ticket = Ticket::default();
        workers.answered(&ticket);
        assert!(matches!(workers.enter_wait(&ticket), Wait::Ready));
        assert_eq!(workers.lock().unanswered, 0);
    }

    #[test]
    fn a_waiter_whose_reply_came_first_does_not_read_a_free_socket() {
        // The reader handed the reply over and freed the role (reserved)
        // between the waiter's first look and its enter_wait.
        let workers = Workers::default();
        let ticket = Ticket::default();
        workers.answered(&ticket);
        workers.lock().release_read(true);
        assert!(matches!(workers.enter_wait(&ticket), Wait::Ready));
        assert!(!on_reader());
    }

    #[test]
    fn a_reservation_runs_out_even_when_its_timer_is_called_away() {
        let workers = std::sync::Arc::new(Workers::default());
        workers.lock().reserved = Some(Instant::now());
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (workers, tx) = (workers.clone(), tx.clone());
            std::thread::spawn(move || tx.send(workers.next_job()).unwrap());
        }
        // Both asleep, one timing the reservation; whichever wakes for the
        // action, the other must end up timing it.
        while workers.lock().idle < 2 {
            std::thread::yield_now();
        }
        workers.push(&mut vec![run()]);
        let mut jobs = [rx.recv_timeout(Duration::from_secs(5)).unwrap(), Job::Exit];
        jobs[1] = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        jobs.sort_by_key(|j| format!("{j:?}"));
        assert_eq!(jobs, [Job::Dispatch, Job::Read]);
    }

    #[test]
    fn a_waiter_giving_up_stops_counting() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        let ticket = Ticket::default();
        let wait = workers.enter_wait(&ticket);
        assert_eq!(workers.lock().unanswered, 1);
        drop(wait);
        assert_eq!(workers.lock().unanswered, 0);
        // A late reply does not count twice.
        workers.answered(&ticket);
        assert_eq!(workers.lock().unanswered, 0);
    }

    #[test]
    fn without_read_timeouts_a_waiter_blocks_and_a_worker_reads_for_it() {
        let workers = Workers::new(false);
        let ticket = Ticket::default();
        // Nobody reads, yet the waiter does not take the role.
        let Wait::Blocked(wait) = workers.enter_wait(&ticket) else {
            panic!("a waiter must not read a stream without read timeouts");
        };
        assert!(!on_reader());
        assert!(workers.lock().unattended());
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading();
        workers.answered(&ticket);
        drop(wait);
        // Every waiter answered: the worker reads on, reserving nothing.
        assert_eq!(workers.after_read(false), Job::Read);
        assert!(workers.lock().reserved.is_none());
    }

    #[test]
    fn exit_stops_every_worker() {
        let workers = Workers::default();
        assert_eq!(workers.next_job(), Job::Read);
        workers.reading();
        workers.push(&mut vec![run()]);
        assert_eq!(workers.after_read(true), Job::Dispatch);
        workers.exit();
        assert_eq!(workers.after_dispatch(), Job::Exit);
        assert_eq!(workers.next_job(), Job::Exit);
    }
}
