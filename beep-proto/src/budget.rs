//! A reassembly budget shared by several sessions: a listener's, so that
//! all its connections together hold at most so many octets of unfinished
//! messages (each session also has its own, `Config::max_reassembly`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Octets of unfinished messages that the sessions sharing it may hold
/// together (see [`Session::share_reassembly_budget`]). Cheap to clone;
/// every clone is the same budget.
///
/// The check is made frame by frame without a lock, so sessions on other
/// threads may each go past it by one frame at the same moment; the
/// budget is a bound on memory, not an exact count.
///
/// ```
/// use beep_proto::SharedBudget;
/// let budget = SharedBudget::new(256 << 20);
/// assert_eq!((budget.used(), budget.limit()), (0, 256 << 20));
/// ```
///
/// [`Session::share_reassembly_budget`]: crate::Session::share_reassembly_budget
#[derive(Clone, Debug)]
pub struct SharedBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    used: AtomicUsize,
    limit: usize,
}

impl SharedBudget {
    /// A budget of `limit` octets, none used.
    ///
    /// ```
    /// assert_eq!(beep_proto::SharedBudget::new(1 << 20).limit(), 1 << 20);
    /// ```
    pub fn new(limit: usize) -> Self {
        SharedBudget {
            inner: Arc::new(Inner {
                used: AtomicUsize::new(0),
                limit,
            }),
        }
    }

    /// The most octets the sessions may hold together.
    ///
    /// ```
    /// assert_eq!(beep_proto::SharedBudget::new(7).limit(), 7);
    /// ```
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The octets the sessions hold now.
    ///
    /// ```
    /// assert_eq!(beep_proto::SharedBudget::new(7).used(), 0);
    /// ```
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// True if `more` octets fit.
    pub(crate) fn fits(&self, more: usize) -> bool {
        self.used().saturating_add(more) <= self.inner.limit
    }

    /// Moves the count from `before` to `after` octets held by one session.
    pub(crate) fn update(&self, before: usize, after: usize) {
        if after > before {
            self.inner.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.inner.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}
