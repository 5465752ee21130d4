//! Backpressure for drivers: how much unsent output a sender may leave in
//! the session before it waits, and when the senders that wait go on.
//!
//! One policy for every driver: a sender waits while more than the limit
//! is queued, and the waiting senders resume once the queue is down to
//! three quarters of it (or the connection ended). The gap keeps a crowd
//! of senders from being woken by every write only to find the queue full
//! again.

use super::{Core, Error};

/// A driver's limit on queued output (its `max_queued_output` option) and
/// the rule for waiting on it.
///
/// ```
/// use beep_proto::dispatch::{Core, Room};
/// use beep_proto::{Config, Session};
/// let core: Core<()> = Core::new(Session::initiator(Config::default()));
/// let queued = core.session().queued_output(); // the greeting
/// assert!(queued > 0);
/// // A limit below what is queued makes senders wait...
/// assert!(Room::new(queued - 1).full(&core));
/// // ...and they go on once the queue is at three quarters of it.
/// assert!(!Room::new(queued).full(&core));
/// assert!(!Room::new(queued).made(&core));
/// assert!(Room::new(queued * 4 / 3 + 1).made(&core));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    limit: usize,
}

impl Room {
    /// The policy for a limit of `limit` octets of unsent output.
    ///
    /// ```
    /// assert_eq!(beep_proto::dispatch::Room::new(4096).limit(), 4096);
    /// ```
    pub const fn new(limit: usize) -> Self {
        Room { limit }
    }

    /// The limit, in octets.
    ///
    /// ```
    /// assert_eq!(beep_proto::dispatch::Room::new(7).limit(), 7);
    /// ```
    pub const fn limit(self) -> usize {
        self.limit
    }

    /// Where waiting senders resume: three quarters of the limit, rounded
    /// down (without overflow, whatever the limit).
    ///
    /// ```
    /// use beep_proto::dispatch::Room;
    /// assert_eq!(Room::new(4 << 20).resume_at(), 3 << 20);
    /// assert_eq!(Room::new(7).resume_at(), 5);
    /// assert_eq!(Room::new(usize::MAX).resume_at(), usize::MAX / 4 * 3 + 2);
    /// ```
    pub const fn resume_at(self) -> usize {
        self.limit / 4 * 3 + self.limit % 4 * 3 / 4
    }

    /// True if a sender must wait before it calls the session: the
    /// connection lives and more than the limit is queued.
    ///
    /// ```
    /// use beep_proto::dispatch::{Core, Room};
    /// use beep_proto::{Config, Session};
    /// let core: Core<()> = Core::new(Session::initiator(Config::default()));
    /// assert!(Room::new(0).full(&core));
    /// assert!(!Room::new(1 << 20).full(&core));
    /// ```
    pub fn full<W>(self, core: &Core<W>) -> bool {
        core.ended().is_none() && core.session().queued_output() > self.limit
    }

    /// True when the senders waiting for room may go on: the queue is at
    /// [`Room::resume_at`] or below, or the connection ended (they then
    /// fail with its reason). Drivers wake their waiting senders only
    /// when this holds.
    ///
    /// ```
    /// use beep_proto::dispatch::{Core, EndReason, Room};
    /// use beep_proto::{Config, Session};
    /// let mut core: Core<()> = Core::new(Session::initiator(Config::default()));
    /// assert!(!Room::new(0).made(&core));
    /// core.end(EndReason::Shutdown, &mut Vec::new());
    /// assert!(Room::new(0).made(&core));
    /// ```
    pub fn made<W>(self, core: &Core<W>) -> bool {
        core.ended().is_some() || core.session().queued_output() <= self.resume_at()
    }

    /// `Ok` if a non-blocking send may go ahead (the connection lives and
    /// no more than the limit is queued), else [`Error::QueueFull`] or
    /// why the connection ended.
    ///
    /// ```
    /// use beep_proto::dispatch::{Core, Error, Room};
    /// use beep_proto::{Config, Session};
    /// let core: Core<()> = Core::new(Session::initiator(Config::default()));
    /// assert!(matches!(Room::new(1).check(&core), Err(Error::QueueFull { limit: 1, .. })));
    /// assert!(Room::new(1 << 20).check(&core).is_ok());
    /// ```
    pub fn check<W>(self, core: &Core<W>) -> Result<(), Error> {
        core.check_room(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_at_is_three_quarters_rounded_down_for_every_limit() {
        for limit in (0..100).chain([usize::MAX - 3, usize::MAX]) {
            let exact = (limit as u128 * 3 / 4) as usize;
            assert_eq!(Room::new(limit).resume_at(), exact, "{limit}");
        }
    }
}
