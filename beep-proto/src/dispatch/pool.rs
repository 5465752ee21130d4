//! Bookkeeping of a channel pool (PyVortex `ChannelPool`): channels running
//! one profile on a connection, handed out one borrower at a time, grown up
//! to a maximum. Drivers add the waiting (a condition variable, a future).

use std::collections::VecDeque;

/// What a borrower should do next.
///
/// ```
/// use beep_proto::dispatch::{PoolState, Take};
/// let mut pool: PoolState<u32> = PoolState::new(2);
/// assert_eq!(pool.take(), Take::Create);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take<C> {
    /// Use this idle channel.
    Idle(C),
    /// Open a new channel, then report it with [`PoolState::created`] (or
    /// [`PoolState::create_failed`]); the slot is reserved meanwhile.
    Create,
    /// Every channel is busy and the pool is at its maximum: wait for a
    /// release.
    Wait,
}

/// Idle channels and counts of a pool.
///
/// ```
/// use beep_proto::dispatch::{PoolState, Take};
/// let mut pool = PoolState::new(1);
/// assert_eq!(pool.take(), Take::Create);
/// pool.created(7, true);
/// assert_eq!(pool.take(), Take::Wait);
/// pool.release(7);
/// assert_eq!(pool.take(), Take::Idle(7));
/// ```
#[derive(Debug, Clone)]
pub struct PoolState<C> {
    idle: VecDeque<C>,
    /// Channels open or being opened.
    total: usize,
    max: usize,
}

impl<C> PoolState<C> {
    /// An empty pool that grows to at most `max` channels (at least one).
    pub fn new(max: usize) -> Self {
        PoolState {
            idle: VecDeque::new(),
            total: 0,
            max: max.max(1),
        }
    }

    /// Takes the next ready channel, or says to create or to wait.
    pub fn take(&mut self) -> Take<C> {
        if let Some(c) = self.idle.pop_front() {
            Take::Idle(c)
        } else if self.total < self.max {
            self.total += 1;
            Take::Create
        } else {
            Take::Wait
        }
    }

    /// Reserves a slot for a channel opened without a borrower (to fill
    /// the pool up front); false when the pool is full.
    pub fn reserve(&mut self) -> bool {
        let room = self.total < self.max;
        if room {
            self.total += 1;
        }
        room
    }

    /// A channel asked for by [`Take::Create`] or [`PoolState::reserve`]
    /// is open; `borrowed` says whether the creator keeps it.
    pub fn created(&mut self, channel: C, borrowed: bool) {
        if !borrowed {
            self.idle.push_back(channel);
        }
    }

    /// Opening a channel failed: its slot is free again.
    pub fn create_failed(&mut self) {
        self.total = self.total.saturating_sub(1);
    }

    /// A borrower is done with `channel`.
    pub fn release(&mut self, channel: C) {
        self.idle.push_back(channel);
    }

    /// A borrower is done with `channel`: back to the idle ones while it is
    /// `open`, otherwise its slot is free.
    pub fn give_back(&mut self, channel: C, open: bool) {
        if open {
            self.release(channel);
        } else {
            self.remove();
        }
    }

    /// A channel left the pool for good (closed); its slot is free.
    pub fn remove(&mut self) {
        self.total = self.total.saturating_sub(1);
    }

    /// Channels open or being opened.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when the pool holds no channel.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Channels ready to be taken.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// The most channels the pool opens.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_maximum_then_waits() {
        let mut pool = PoolState::new(2);
        assert!(pool.reserve());
        pool.created('a', false);
        assert_eq!(pool.take(), Take::Idle('a'));
        assert_eq!(pool.take(), Take::Create);
        pool.created('b', true);
        assert_eq!(pool.take(), Take::Wait);
        assert!(!pool.reserve());
        pool.release('a');
        assert_eq!((pool.len(), pool.idle()), (2, 1));
        assert_eq!(pool.take(), Take::Idle('a'));
    }

    #[test]
    fn a_failed_creation_frees_its_slot() {
        let mut pool: PoolState<char> = PoolState::new(1);
        assert_eq!(pool.take(), Take::Create);
        pool.create_failed();
        assert_eq!(pool.take(), Take::Create);
    }
}
