//! Volume-based unmute conditions ("V events per N periods") and a cheap per-issue upper bound.

// A condition holds when the issue received at least `volume` events in the rolling window
// `(now - window, now]`. Deciding that exactly needs a database count, which is too costly to run
// for every event of every muted issue. `Buckets` keeps a handful of coarse counters per condition
// (stored with the issue, see `issue::plan::MuteCounters`) and answers an UPPER BOUND of that count: when the bound is below `volume` the
// condition certainly does not hold and the database is not asked; only when the bound reaches
// `volume` does the caller run the exact count (and then `state::unmute_by_condition`). A bound
// that is too high costs one extra query; a bound that is too low would miss an unmute, so every
// choice below errs upwards.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest `nr_of_periods` a condition may have (10,000 years at most).
pub const MAX_NR_OF_PERIODS: u32 = 10_000;

/// The unit of a condition's window. A month is 30 days and a year is 365 days: fixed lengths,
/// so that a window never depends on the calendar it happens to start in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// Length of one period in seconds (month = 30 days, year = 365 days).
    pub fn seconds(self) -> i64 {
        const DAY: i64 = 86_400;
        match self {
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => DAY,
            Period::Week => 7 * DAY,
            Period::Month => 30 * DAY,
            Period::Year => 365 * DAY,
        }
    }

    /// The lowercase name used in JSON and in messages ("minute", "hour", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }
}

/// "At least `volume` events in the last `nr_of_periods` × `period`", the seed's
/// `VolumeBasedCondition`; JSON `{"period":"day","nr_of_periods":1,"volume":100}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeCondition {
    pub period: Period,
    pub nr_of_periods: u32,
    pub volume: u64,
}

impl VolumeCondition {
    /// The rolling window, `nr_of_periods` × `period`. Saturates instead of overflowing for
    /// conditions that `validate` would refuse, so it never panics.
    pub fn window(&self) -> Duration {
        self.period
            .seconds()
            .checked_mul(i64::from(self.nr_of_periods))
            .and_then(Duration::try_seconds)
            .unwrap_or(Duration::MAX)
    }

    /// `Ok` when `1 <= nr_of_periods <= MAX_NR_OF_PERIODS` and `volume >= 1`; the error is a
    /// client-facing sentence. A volume of 0 would hold always, so it could never be a condition
    /// worth waiting for.
    pub fn validate(&self) -> Result<(), String> {
        if self.nr_of_periods == 0 || self.nr_of_periods > MAX_NR_OF_PERIODS {
            return Err(format!(
                "Invalid condition '{}': nr_of_periods must be between 1 and {MAX_NR_OF_PERIODS}",
                self.describe()
            ));
        }
        if self.volume == 0 {
            return Err(format!(
                "Invalid condition '{}': volume must be at least 1",
                self.describe()
            ));
        }
        Ok(())
    }

    /// Human form used in reasons and refusals: "10 events per 5 minutes", "1 event per 1 day".
    pub fn describe(&self) -> String {
        let events = if self.volume == 1 { "event" } else { "events" };
        let plural = if self.nr_of_periods == 1 { "" } else { "s" };
        format!(
            "{} {events} per {} {}{plural}",
            self.volume,
            self.nr_of_periods,
            self.period.as_str()
        )
    }
}

/// Rolling per-bucket event counters for one issue and one condition: a cheap upper-bound filter
/// evaluated on every batch.
///
/// Contract: `upper_bound(now) >= volume` is the caller's trigger to run the exact count in the
/// database; `upper_bound(now) < volume` proves the condition does not hold, provided every event
/// of the issue since the counters were created was passed to `add` and `now` is not earlier than
/// any `at` passed to `add` (time is the server's receive time, which only moves forward).
///
/// The bucket width is `window / 60` (at least one second), so at most about 62 buckets are kept
/// however far time moves and however many events arrive; the bound overshoots the exact count by
/// at most the events of one bucket width before the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    /// Window length in microseconds; i128 so that `now - window` can never overflow.
    window_us: i128,
    /// Bucket width in microseconds, >= 1 second.
    width_us: i128,
    /// `(bucket index, events)`, ascending by index, no duplicates, no zero counts.
    buckets: VecDeque<(i128, u64)>,
    /// Newest `at` seen, in microseconds; buckets that end at or before `newest - window` can no
    /// longer overlap any window the caller may ask about and are dropped.
    newest_us: Option<i128>,
}

impl Buckets {
    pub fn new(cond: &VolumeCondition) -> Self {
        let window_us = cond
            .window()
            .num_microseconds()
            .map_or(i128::from(i64::MAX), i128::from);
        Buckets {
            window_us,
            width_us: (window_us / 60).max(1_000_000),
            buckets: VecDeque::new(),
            newest_us: None,
        }
    }

    /// Counts `n` events received at `at`. Events that are already too old for any window ending
    /// at or after the newest `at` are not kept: they can never count again.
    pub fn add(&mut self, at: DateTime<Utc>, n: u64) {
        if n == 0 {
            return;
        }
        let at_us = i128::from(at.timestamp_micros());
        let newest = self.newest_us.map_or(at_us, |t| t.max(at_us));
        self.newest_us = Some(newest);
        let index = at_us.div_euclid(self.width_us);
        if self.expired(index, newest) {
            return;
        }
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(pos) => {
                if let Some(b) = self.buckets.get_mut(pos) {
                    b.1 = b.1.saturating_add(n);
                }
            }
            Err(pos) => self.buckets.insert(pos, (index, n)),
        }
        self.prune(newest);
    }

    /// Sum of the buckets that overlap `(now - window, now]`; never below the exact number of
    /// added events in that window (see the type's contract).
    pub fn upper_bound(&self, now: DateTime<Utc>) -> u64 {
        let now_us = i128::from(now.timestamp_micros());
        self.buckets
            .iter()
            .filter(|&&(i, _)| self.overlaps(i, now_us))
            .fold(0u64, |sum, &(_, n)| sum.saturating_add(n))
    }

    /// How many buckets are kept (for tests and for memory accounting).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Whether bucket `index`, covering `[index*w, (index+1)*w)`, overlaps `(now - window, now]`.
    fn overlaps(&self, index: i128, now_us: i128) -> bool {
        let start = index * self.width_us;
        let end = start + self.width_us;
        end > now_us - self.window_us && start <= now_us
    }

    /// Whether bucket `index` ends at or before `newest - window`, so that no window ending at
    /// or after `newest` can overlap it.
    fn expired(&self, index: i128, newest_us: i128) -> bool {
        (index + 1) * self.width_us <= newest_us - self.window_us
    }

    fn prune(&mut self, newest: i128) {
        while let Some(&(i, _)) = self.buckets.front() {
            if !self.expired(i, newest) {
                break;
            }
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cond(period: Period, nr_of_periods: u32, volume: u64) -> VolumeCondition {
        VolumeCondition {
            period,
            nr_of_periods,
            volume,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn windows() {
        let rows = [
            (Period::Minute, 5, Duration::minutes(5)),
            (Period::Hour, 1, Duration::hours(1)),
            (Period::Day, 2, Duration::days(2)),
            (Period::Week, 1, Duration::days(7)),
            (Period::Month, 1, Duration::days(30)),
            (Period::Year, 2, Duration::days(730)),
            (Period::Year, 10_000, Duration::days(3_650_000)),
            (Period::Year, u32::MAX, Duration::MAX),
        ];
        for (period, n, want) in rows {
            assert_eq!(cond(period, n, 1).window(), want, "{period:?} × {n}");
        }
    }

    #[test]
    fn descriptions() {
        let rows = [
            (cond(Period::Minute, 5, 10), "10 events per 5 minutes"),
            (cond(Period::Day, 1, 100), "100 events per 1 day"),
            (cond(Period::Hour, 1, 1), "1 event per 1 hour"),
            (cond(Period::Week, 2, 3), "3 events per 2 weeks"),
            (cond(Period::Month, 1, 7), "7 events per 1 month"),
            (cond(Period::Year, 3, 1), "1 event per 3 years"),
        ];
        for (c, want) in rows {
            assert_eq!(c.describe(), want);
        }
    }

    #[test]
    fn validation() {
        let rows: [(VolumeCondition, Result<(), &str>); 6] = [
            (cond(Period::Minute, 1, 1), Ok(())),
            (cond(Period::Year, 10_000, u64::MAX), Ok(())),
            (
                cond(Period::Minute, 0, 1),
                Err("Invalid condition '1 event per 0 minutes': nr_of_periods must be between 1 and 10000"),
            ),
            (
                cond(Period::Day, 10_001, 5),
                Err("Invalid condition '5 events per 10001 days': nr_of_periods must be between 1 and 10000"),
            ),
            (
                cond(Period::Hour, 1, 0),
                Err("Invalid condition '0 events per 1 hour': volume must be at least 1"),
            ),
            (cond(Period::Week, 3, 2), Ok(())),
        ];
        for (c, want) in rows {
            assert_eq!(c.validate(), want.map_err(String::from), "{c:?}");
        }
    }

    #[test]
    fn serde_shape() {
        let c = cond(Period::Day, 1, 100);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"period": "day", "nr_of_periods": 1, "volume": 100})
        );
        assert_eq!(serde_json::from_value::<VolumeCondition>(json).unwrap(), c);
        assert!(serde_json::from_str::<VolumeCondition>(
            r#"{"period":"fortnight","nr_of_periods":1,"volume":1}"#
        )
        .is_err());
    }

    #[test]
    fn old_events_drop_out_of_the_window() {
        let c = cond(Period::Minute, 5, 10);
        let mut b = Buckets::new(&c);
        b.add(t0(), 3);
        b.add(t0() + Duration::seconds(1), 0);
        assert_eq!(b.upper_bound(t0()), 3);
        assert_eq!(b.upper_bound(t0() + Duration::minutes(4)), 3);
        // The window is (now - 5 min, now]: an event exactly 5 minutes old is out, but the bound
        // may still count its bucket (5 s wide) for up to one more bucket width.
        assert_eq!(
            b.upper_bound(t0() + Duration::minutes(5) + Duration::seconds(5)),
            0
        );
        assert_eq!(b.upper_bound(t0() + Duration::hours(1)), 0);
        // A late event older than the window of the newest one is not kept.
        b.add(t0() + Duration::hours(1), 1);
        b.add(t0(), 5);
        assert_eq!(b.upper_bound(t0() + Duration::hours(1)), 1);
        assert_eq!(b.bucket_count(), 1);
    }

    #[test]
    fn memory_stays_bounded_when_time_moves_far_ahead() {
        for c in [
            cond(Period::Minute, 1, 1),
            cond(Period::Minute, 5, 1),
            cond(Period::Hour, 3, 1),
            cond(Period::Year, 2, 1),
        ] {
            let mut b = Buckets::new(&c);
            let step = (c.window() / 7).max(Duration::seconds(1));
            let mut at = t0();
            for _ in 0..2_000 {
                b.add(at, 1);
                at += step;
                assert!(b.bucket_count() <= 62, "{c:?}: {}", b.bucket_count());
            }
            // A jump far ahead leaves only the new bucket.
            let far = t0() + Duration::days(365 * 100_000);
            b.add(far, 2);
            assert!(b.bucket_count() <= 62);
            assert_eq!(b.upper_bound(far), 2);
            assert_eq!(b.bucket_count(), 1);
        }
    }

    /// Deterministic xorshift so the "random" sequences are the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn upper_bound_is_never_below_the_exact_count() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for c in [
            cond(Period::Minute, 1, 1),
            cond(Period::Minute, 5, 1),
            cond(Period::Hour, 1, 1),
            cond(Period::Day, 2, 1),
        ] {
            let window_us = c.window().num_microseconds().unwrap();
            let mut b = Buckets::new(&c);
            let mut events: Vec<(DateTime<Utc>, u64)> = Vec::new();
            let mut now = t0();
            for _ in 0..1_200 {
                // Steps from 0 to ~window/4, with sub-second parts, so events straddle bucket
                // edges and the window edge.
                let step = (rng.next() % (window_us as u64 / 4 + 1)) as i64;
                now += Duration::microseconds(step);
                let n = rng.next() % 4;
                b.add(now, n);
                events.push((now, n));
                // Ask about "now" and about a few moments later, as a batch evaluated later would.
                for later in [0, rng.next() % (window_us as u64 * 2)] {
                    let at = now + Duration::microseconds(later as i64);
                    let exact: u64 = events
                        .iter()
                        .filter(|(t, _)| *t > at - c.window() && *t <= at)
                        .map(|(_, n)| n)
                        .sum();
                    let bound = b.upper_bound(at);
                    assert!(
                        bound >= exact,
                        "{c:?} at {at}: bound {bound} < exact {exact}"
                    );
                    // And it is not wildly off: at most one bucket's worth of extra events.
                    let slack: u64 = events
                        .iter()
                        .filter(|(t, _)| *t > at - c.window() - c.window() / 30 && *t <= at)
                        .map(|(_, n)| n)
                        .sum();
                    assert!(bound <= slack, "{c:?} at {at}: bound {bound} > {slack}");
                }
                assert!(b.bucket_count() <= 62);
            }
        }
    }
}
