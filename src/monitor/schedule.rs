//! A monitor's configuration (`monitor_config`): its schedule, margins and thresholds, read and checked from JSON, and the expected times it implies.

use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::{json, Value};
use std::str::FromStr;

/// Sentry's bound on `checkin_margin` and `max_runtime`: 28 days, in minutes.
pub const MAX_MINUTES: u64 = 40_320;
/// Sentry's bounds on `failure_issue_threshold` and `recovery_threshold`.
pub const MAX_THRESHOLD: u64 = 720;

/// The unit of an interval schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "year" => Unit::Year,
            "month" => Unit::Month,
            "week" => Unit::Week,
            "day" => Unit::Day,
            "hour" => Unit::Hour,
            "minute" => Unit::Minute,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Year => "year",
            Unit::Month => "month",
            Unit::Week => "week",
            Unit::Day => "day",
            Unit::Hour => "hour",
            Unit::Minute => "minute",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Schedule {
    /// A 5-field crontab, evaluated in the monitor's time zone.
    Crontab { value: String, cron: Box<Cron> },
    /// Every `value` units after the last check-in (or the last expected time).
    Interval { value: u32, unit: Unit },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Crontab { value: a, .. }, Schedule::Crontab { value: b, .. }) => a == b,
            (
                Schedule::Interval { value: a, unit: u },
                Schedule::Interval { value: b, unit: v },
            ) => a == b && u == v,
            _ => false,
        }
    }
}

/// A monitor's configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub schedule: Schedule,
    pub timezone: Tz,
    /// Minutes of grace after the expected time before a check-in counts as missed.
    pub checkin_margin: u32,
    /// Minutes a check-in may stay in progress before it counts as timed out.
    pub max_runtime: u32,
    pub failure_issue_threshold: u32,
    pub recovery_threshold: u32,
    /// Kept for display only (`user:…` / `team:…`).
    pub owner: Option<String>,
}

const MINUTE_US: i64 = 60_000_000;

fn bounded(v: Option<&Value>, name: &str, default: u64, min: u64, max: u64) -> Result<u32, String> {
    match v {
        None | Some(Value::Null) => Ok(default as u32),
        Some(v) => {
            // SDKs send integers; a float with no fraction (5.0) is accepted as well.
            let n = v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| format!("monitor_config.{name}: expected a whole number"))?;
            if n < min || n > max {
                return Err(format!(
                    "monitor_config.{name}: {n} is out of bounds ({min}..={max})"
                ));
            }
            Ok(n as u32)
        }
    }
}

impl MonitorConfig {
    /// Reads `monitor_config` as SDKs send it; every error names the field.
    pub fn from_json(v: &Value) -> Result<MonitorConfig, String> {
        let obj = v.as_object().ok_or("monitor_config: expected an object")?;
        let schedule = obj
            .get("schedule")
            .and_then(Value::as_object)
            .ok_or("monitor_config.schedule: expected an object with type and value")?;
        let schedule = match schedule.get("type").and_then(Value::as_str) {
            Some("crontab") => {
                let value = schedule
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or("monitor_config.schedule.value: expected a crontab string")?
                    .trim()
                    .to_string();
                let fields = value.split_whitespace().count();
                if fields != 5 && !value.starts_with('@') {
                    return Err(format!(
                        "monitor_config.schedule.value: a crontab has 5 fields, '{value}' has {fields}"
                    ));
                }
                let cron = Cron::from_str(&value)
                    .map_err(|e| format!("monitor_config.schedule.value: '{value}': {e}"))?;
                Schedule::Crontab {
                    value,
                    cron: Box::new(cron),
                }
            }
            Some("interval") => {
                let value = schedule
                    .get("value")
                    .and_then(Value::as_u64)
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or("monitor_config.schedule.value: expected a positive whole number")?;
                let unit = schedule
                    .get("unit")
                    .and_then(Value::as_str)
                    .and_then(Unit::parse)
                    .ok_or(
                        "monitor_config.schedule.unit: expected year, month, week, day, hour or minute",
                    )?;
                Schedule::Interval {
                    value: value as u32,
                    unit,
                }
            }
            _ => {
                return Err(
                    "monitor_config.schedule.type: expected \"crontab\" or \"interval\"".into(),
                )
            }
        };
        let timezone = match obj.get("timezone") {
            None | Some(Value::Null) => Tz::UTC,
            Some(Value::String(s)) if s.is_empty() => Tz::UTC,
            Some(Value::String(s)) => s
                .parse::<Tz>()
                .map_err(|_| format!("monitor_config.timezone: unknown time zone '{s}'"))?,
            Some(_) => return Err("monitor_config.timezone: expected a tz database name".into()),
        };
        let owner = obj.get("owner").and_then(Value::as_str).map(str::to_string);
        Ok(MonitorConfig {
            schedule,
            timezone,
            checkin_margin: bounded(
                obj.get("checkin_margin"),
                "checkin_margin",
                1,
                1,
                MAX_MINUTES,
            )?,
            max_runtime: bounded(obj.get("max_runtime"), "max_runtime", 30, 1, MAX_MINUTES)?,
            failure_issue_threshold: bounded(
                obj.get("failure_issue_threshold"),
                "failure_issue_threshold",
                1,
                1,
                MAX_THRESHOLD,
            )?,
            recovery_threshold: bounded(
                obj.get("recovery_threshold"),
                "recovery_threshold",
                1,
                1,
                MAX_THRESHOLD,
            )?,
            owner,
        })
    }

    /// The configuration as stored and shown (Sentry's field names).
    pub fn to_json(&self) -> Value {
        let schedule = match &self.schedule {
            Schedule::Crontab { value, .. } => json!({"type": "crontab", "value": value}),
            Schedule::Interval { value, unit } => {
                json!({"type": "interval", "value": value, "unit": unit.as_str()})
            }
        };
        let mut v = json!({
            "schedule": schedule,
            "schedule_type": match self.schedule { Schedule::Crontab { .. } => "crontab", Schedule::Interval { .. } => "interval" },
            "timezone": self.timezone.name(),
            "checkin_margin": self.checkin_margin,
            "max_runtime": self.max_runtime,
            "failure_issue_threshold": self.failure_issue_threshold,
            "recovery_threshold": self.recovery_threshold,
        });
        if let (Some(owner), Value::Object(m)) = (&self.owner, &mut v) {
            m.insert("owner".into(), Value::String(owner.clone()));
        }
        v
    }

    /// The margin in µs.
    pub fn margin_us(&self) -> i64 {
        i64::from(self.checkin_margin) * MINUTE_US
    }

    /// `max_runtime` in µs.
    pub fn max_runtime_us(&self) -> i64 {
        i64::from(self.max_runtime) * MINUTE_US
    }

    /// The next expected check-in strictly after `t_us` (µs since the epoch): the crontab's next
    /// match in the monitor's time zone (croner resolves DST gaps and overlaps: a time in a
    /// gap runs at the first valid time after it, one in an overlap once), or `t + interval`.
    /// `None` only when no time can be computed (a crontab that never matches again).
    pub fn next_after(&self, t_us: i64) -> Option<i64> {
        let t = Utc.timestamp_micros(t_us).single()?;
        match &self.schedule {
            Schedule::Crontab { cron, .. } => {
                let local = t.with_timezone(&self.timezone);
                let next = cron.find_next_occurrence(&local, false).ok()?;
                Some(next.with_timezone(&Utc).timestamp_micros())
            }
            Schedule::Interval { value, unit } => {
                let n = i64::from(*value);
                let next: DateTime<Utc> = match unit {
                    Unit::Minute => t.checked_add_signed(Duration::minutes(n))?,
                    Unit::Hour => t.checked_add_signed(Duration::hours(n))?,
                    Unit::Day => t.checked_add_signed(Duration::days(n))?,
                    Unit::Week => t.checked_add_signed(Duration::weeks(n))?,
                    // Calendar units in the monitor's zone: "every month" keeps the day.
                    Unit::Month | Unit::Year => {
                        let months = if *unit == Unit::Year { n * 12 } else { n };
                        let local = t.with_timezone(&self.timezone);
                        let next =
                            local.checked_add_months(Months::new(u32::try_from(months).ok()?))?;
                        debug_assert!(next.year() >= local.year());
                        next.with_timezone(&Utc)
                    }
                };
                Some(next.timestamp_micros())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn cfg(v: Value) -> MonitorConfig {
        MonitorConfig::from_json(&v).unwrap()
    }

    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.from_local_datetime(
            &NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_opt(h, mi, 0)
                .unwrap(),
        )
        .earliest()
        .unwrap()
        .timestamp_micros()
    }

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    fn iso(us: i64) -> String {
        Utc.timestamp_micros(us).unwrap().to_rfc3339()
    }

    #[test]
    fn defaults_and_bounds() {
        let c = cfg(json!({"schedule": {"type": "crontab", "value": "0 * * * *"}}));
        assert_eq!(c.timezone, Tz::UTC);
        assert_eq!(
            (
                c.checkin_margin,
                c.max_runtime,
                c.failure_issue_threshold,
                c.recovery_threshold
            ),
            (1, 30, 1, 1)
        );
        let bad = [
            (json!(null), "monitor_config"),
            (json!({}), "monitor_config.schedule"),
            (
                json!({"schedule": {"type": "weekly"}}),
                "monitor_config.schedule.type",
            ),
            (
                json!({"schedule": {"type": "crontab", "value": "61 * * * *"}}),
                "monitor_config.schedule.value",
            ),
            (
                json!({"schedule": {"type": "crontab", "value": "* * *"}}),
                "monitor_config.schedule.value",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 0, "unit": "hour"}}),
                "monitor_config.schedule.value",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "fortnight"}}),
                "monitor_config.schedule.unit",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "day"}, "timezone": "Mars/Olympus"}),
                "monitor_config.timezone",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "day"}, "checkin_margin": 40321}),
                "monitor_config.checkin_margin",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "day"}, "max_runtime": "5"}),
                "monitor_config.max_runtime",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "day"}, "failure_issue_threshold": 0}),
                "monitor_config.failure_issue_threshold",
            ),
            (
                json!({"schedule": {"type": "interval", "value": 3, "unit": "day"}, "recovery_threshold": 721}),
                "monitor_config.recovery_threshold",
            ),
        ];
        for (v, field) in bad {
            let e = MonitorConfig::from_json(&v).unwrap_err();
            assert!(e.starts_with(field), "{v}: {e}");
        }
        let c = cfg(
            json!({"schedule": {"type": "interval", "value": 10, "unit": "minute"},
            "checkin_margin": 40320, "max_runtime": 5, "failure_issue_threshold": 720,
            "recovery_threshold": 2, "timezone": "Europe/Berlin", "owner": "user:a@b.c"}),
        );
        assert_eq!(MonitorConfig::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn interval_schedules() {
        let c = cfg(json!({"schedule": {"type": "interval", "value": 10, "unit": "minute"}}));
        let t = utc("2026-03-01T10:00:00Z");
        assert_eq!(iso(c.next_after(t).unwrap()), "2026-03-01T10:10:00+00:00");
        let c = cfg(json!({"schedule": {"type": "interval", "value": 1, "unit": "month"}}));
        assert_eq!(
            iso(c.next_after(utc("2026-01-31T08:00:00Z")).unwrap()),
            "2026-02-28T08:00:00+00:00"
        );
        let c = cfg(json!({"schedule": {"type": "interval", "value": 2, "unit": "week"}}));
        assert_eq!(
            iso(c.next_after(utc("2026-01-01T00:00:00Z")).unwrap()),
            "2026-01-15T00:00:00+00:00"
        );
    }

    #[test]
    fn crontab_in_new_york_across_both_dst_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let c = cfg(
            json!({"schedule": {"type": "crontab", "value": "30 2 * * *"}, "timezone": "America/New_York"}),
        );
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day: the
        // run moves to the first valid time after the gap (03:00 EDT = 07:00 UTC).
        let before = at(ny, 2026, 3, 7, 2, 30); // 07:30 UTC (EST, -5)
        assert_eq!(iso(before), "2026-03-07T07:30:00+00:00");
        let gap = c.next_after(before).unwrap();
        assert_eq!(iso(gap), "2026-03-08T07:00:00+00:00");
        // The day after, 02:30 EDT (-4) = 06:30 UTC: 23 h 30 min after the gap run.
        let after = c.next_after(gap).unwrap();
        assert_eq!(iso(after), "2026-03-09T06:30:00+00:00");
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 02:30 happens once, in EST (-5).
        let oct31 = c.next_after(at(ny, 2026, 10, 31, 0, 0)).unwrap();
        assert_eq!(iso(oct31), "2026-10-31T06:30:00+00:00");
        let nov1 = c.next_after(oct31).unwrap();
        assert_eq!(iso(nov1), "2026-11-01T07:30:00+00:00");
        let nov2 = c.next_after(nov1).unwrap();
        assert_eq!(iso(nov2), "2026-11-02T07:30:00+00:00");
        // 25 hours between the runs around the fall-back day.
        assert_eq!(nov1 - oct31, 25 * 3600 * 1_000_000);
    }

    #[test]
    fn hourly_crontab_in_berlin_across_dst_changes() {
        let c = cfg(
            json!({"schedule": {"type": "crontab", "value": "0 * * * *"}, "timezone": "Europe/Berlin"}),
        );
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). Runs at 00:00 UTC (01:00
        // CET), then 01:00 UTC (03:00 CEST): one hour apart, no run lost or doubled.
        let t = utc("2026-03-28T23:30:00Z");
        let mut runs = Vec::new();
        let mut cur = t;
        for _ in 0..4 {
            cur = c.next_after(cur).unwrap();
            runs.push(iso(cur));
        }
        assert_eq!(
            runs,
            [
                "2026-03-29T00:00:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T02:00:00+00:00",
                "2026-03-29T03:00:00+00:00"
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC), so 02:00 local happens
        // twice (00:00 and 01:00 UTC). croner expects a repeated wall-clock time once, at its
        // first occurrence: the hour after it is not expected, which can only delay a missed
        // verdict, never raise a false one.
        let mut cur = utc("2026-10-24T23:30:00Z");
        let mut runs = Vec::new();
        for _ in 0..4 {
            cur = c.next_after(cur).unwrap();
            runs.push(iso(cur));
        }
        assert_eq!(
            runs,
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-25T03:00:00+00:00",
                "2026-10-25T04:00:00+00:00"
            ]
        );
    }
}
