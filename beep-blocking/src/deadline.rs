//! Timeouts as deadlines. A timeout too long for an [`Instant`]
//! (`Duration::MAX`, or anything reaching past what the clock can count)
//! means no deadline: the wait lasts until its event, however long.
//! `Instant::now() + timeout` would panic instead.

use std::time::{Duration, Instant};

/// When a wait of `timeout` starting now ends; `None` (no deadline) when
/// no `Instant` is that far.
pub(crate) fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// What is left until `deadline`: `None` without a deadline, zero once it
/// has passed.
pub(crate) fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// True when `left` (from [`left`]) says the deadline has passed; never
/// without a deadline.
pub(crate) fn passed(left: Option<Duration>) -> bool {
    left.is_some_and(|left| left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_what_an_instant_holds_is_no_deadline() {
        assert_eq!(after(Duration::MAX), None);
        assert_eq!(left(after(Duration::MAX)), None);
        assert!(!passed(left(after(Duration::MAX))));
    }

    #[test]
    fn an_ordinary_timeout_counts_down_to_zero() {
        let soon = after(Duration::from_secs(60));
        assert!(soon.is_some());
        assert!(left(soon).is_some_and(|l| l > Duration::ZERO && l <= Duration::from_secs(60)));
        assert!(passed(left(after(Duration::ZERO))));
    }
}
