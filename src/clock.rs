//! The only source of "now": the system clock in production, a manual clock in tests.

use chrono::{DateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where the current time comes from. Cheap to clone; shared by the whole server.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    /// Microseconds since the epoch, moved only by the test that owns it.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start.timestamp_micros())))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(us) => Utc
                .timestamp_micros(us.load(Ordering::SeqCst))
                .single()
                .unwrap_or_default(),
        }
    }

    /// Seconds since the epoch with microsecond precision, as events carry them.
    pub fn now_secs(&self) -> f64 {
        self.now().timestamp_micros() as f64 / 1e6
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Manual(us) = self {
            us.fetch_add(by.num_microseconds().unwrap_or(0), Ordering::SeqCst);
        }
    }
}

/// A moment from microseconds since the epoch (out of range: the epoch itself).
pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::seconds(90));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
    }
}
