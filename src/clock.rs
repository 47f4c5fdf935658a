//! Time as a value passed in, so tests can move it.
//!
//! Protocol code never calls `OffsetDateTime::now_utc()` itself: it asks the
//! [`Clock`] it was given. Production uses [`Clock::system`]; tests use
//! [`Clock::manual`] and advance it to check expiry without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

/// A source of the current time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock, in milliseconds since the epoch.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: OffsetDateTime) -> Self {
        let millis = (start.unix_timestamp_nanos() / 1_000_000) as i64;
        Self {
            manual: Some(Arc::new(AtomicI64::new(millis))),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(millis) = &self.manual {
            millis.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    /// Whether this is a manual clock. Code that measures intervals reads a
    /// monotonic clock in production (the wall clock can step back) and
    /// this one under test.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        match &self.manual {
            None => OffsetDateTime::now_utc(),
            Some(millis) => {
                let nanos = i128::from(millis.load(Ordering::SeqCst)) * 1_000_000;
                OffsetDateTime::from_unix_timestamp_nanos(nanos)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            }
        }
    }

    /// The current time in whole seconds since the epoch.
    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.unix(), 1_700_000_000);
        clock.advance(std::time::Duration::from_secs(31));
        assert_eq!(clock.unix(), 1_700_000_031);
    }
}
