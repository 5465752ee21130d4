//! When a driver's connection last moved a byte, for its idle timeout
//! (the drivers' `Options::idle_timeout`). The driver owns the clock: it
//! passes the time in, and reads it only when the connection has an idle
//! timeout, so a connection without one (the default) pays nothing per
//! message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::EndReason;

/// A connection's last activity, noted without a lock by whichever thread
/// or task moved bytes (see the module documentation).
///
/// ```
/// use std::time::{Duration, Instant};
/// use beep_proto::dispatch::Activity;
/// let started = Instant::now();
/// let activity = Activity::new(started, Duration::from_secs(600));
/// assert_eq!(activity.idle_at(), started.checked_add(Duration::from_secs(600)));
/// activity.touch(Instant::now);
/// assert!(activity.idle_at() >= started.checked_add(Duration::from_secs(600)));
/// assert!(Activity::new(started, Duration::MAX).idle_at().is_none(), "no idle timeout");
/// ```
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// The idle timeout; `None` without one.
    limit: Option<Duration>,
    /// Nanoseconds from `started` to the last activity.
    last: AtomicU64,
}

impl Activity {
    /// A connection started at `started` that may be idle for `limit`
    /// (`Duration::MAX`, or any limit too long for an `Instant`: never
    /// ends for idleness).
    ///
    /// ```
    /// let a = beep_proto::dispatch::Activity::new(std::time::Instant::now(), std::time::Duration::MAX);
    /// assert!(a.idle_at().is_none());
    /// ```
    pub fn new(started: Instant, limit: Duration) -> Self {
        Activity {
            started,
            limit: started.checked_add(limit).map(|_| limit),
            last: AtomicU64::new(0),
        }
    }

    /// Notes activity now (`now` reads the driver's clock), if the
    /// connection has an idle timeout.
    ///
    /// ```
    /// let a = beep_proto::dispatch::Activity::new(std::time::Instant::now(), std::time::Duration::MAX);
    /// a.touch(|| panic!("no idle timeout: the clock is not read"));
    /// ```
    pub fn touch(&self, now: impl FnOnce() -> Instant) {
        if self.limit.is_some() {
            let since = now().saturating_duration_since(self.started);
            let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
            self.last.store(nanos, Ordering::Relaxed);
        }
    }

    /// When the connection is idle if nothing moves before; `None`
    /// without an idle timeout.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let started = Instant::now();
    /// let a = beep_proto::dispatch::Activity::new(started, Duration::from_secs(1));
    /// assert_eq!(a.idle_at(), Some(started + Duration::from_secs(1)));
    /// ```
    pub fn idle_at(&self) -> Option<Instant> {
        let last = Duration::from_nanos(self.last.load(Ordering::Relaxed));
        self.started.checked_add(last)?.checked_add(self.limit?)
    }

    /// Why a connection that was idle too long ends.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use beep_proto::dispatch::{Activity, EndReason};
    /// let a = Activity::new(Instant::now(), Duration::from_millis(300));
    /// assert_eq!(a.reason(), EndReason::Lost("idle for 0.3 s".into()));
    /// ```
    pub fn reason(&self) -> EndReason {
        let limit = self.limit.unwrap_or(Duration::MAX);
        EndReason::Lost(format!("idle for {} s", limit.as_secs_f64()))
    }
}
