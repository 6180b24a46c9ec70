//! The pure state machine of one (monitor, environment): stored facts plus one input (a check-in, a missed deadline, a timeout) give the new facts and the effects to store.

/// What a (monitor, environment) remembers between inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// Consecutive failures (missed, timeout, error) of the current streak.
    pub failures: u32,
    /// Consecutive `ok` check-ins since the last failure.
    pub oks: u32,
    /// An incident (the monitor's issue, opened by this streak) is open.
    pub incident_open: bool,
}

/// The thresholds of the monitor's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure_issue_threshold: u32,
    pub recovery_threshold: u32,
}

/// One thing that happened to the monitor environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A job started: it counts as the expected check-in but is neither ok nor a failure.
    InProgress,
    Ok,
    Error,
    /// A check-in with a status we do not know: it arrived, nothing more.
    Unknown,
    /// No check-in by the expected time plus the margin.
    Missed,
    /// In progress for longer than `max_runtime`.
    Timeout,
}

impl Input {
    pub fn is_failure(self) -> bool {
        matches!(self, Input::Error | Input::Missed | Input::Timeout)
    }

    /// The status a check-in row gets for this input.
    pub fn status(self) -> &'static str {
        match self {
            Input::InProgress => "in_progress",
            Input::Ok => "ok",
            Input::Error => "error",
            Input::Unknown => "unknown",
            Input::Missed => "missed",
            Input::Timeout => "timeout",
        }
    }
}

/// What to store besides the check-in row itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    pub facts: Facts,
    /// The failure count reached the threshold with no incident open: open one (its first
    /// event creates or reopens the monitor's issue).
    pub open_incident: bool,
    /// This failure becomes an event of the open incident (the opening failure included).
    pub failure_event: bool,
    /// `recovery_threshold` consecutive oks while an incident was open: resolve it.
    pub resolve_incident: bool,
}

/// The monitor environment's status as shown: `error` while an incident is open or the last
/// input failed, `ok` after an ok, else `active`.
pub fn status(facts: &Facts, last: Input) -> &'static str {
    if facts.incident_open || (facts.failures > 0 && last.is_failure()) {
        "error"
    } else if last == Input::Ok || facts.oks > 0 {
        "ok"
    } else if facts.failures > 0 {
        "error"
    } else {
        "active"
    }
}

/// The pure step: one input applied to the stored facts. One issue per failing streak: a
/// streak opens the incident once, when it reaches the threshold; every later failure of the
/// streak adds an event to it; only `recovery_threshold` consecutive oks close it.
pub fn step(facts: &Facts, input: Input, t: &Thresholds) -> Effects {
    let mut next = *facts;
    let mut out = Effects {
        facts: next,
        open_incident: false,
        failure_event: false,
        resolve_incident: false,
    };
    match input {
        Input::InProgress | Input::Unknown => {}
        Input::Ok => {
            next.oks = next.oks.saturating_add(1);
            if next.incident_open {
                if next.oks >= t.recovery_threshold.max(1) {
                    next.incident_open = false;
                    next.failures = 0;
                    out.resolve_incident = true;
                }
            } else {
                next.failures = 0;
            }
        }
        Input::Error | Input::Missed | Input::Timeout => {
            next.oks = 0;
            next.failures = next.failures.saturating_add(1);
            if next.incident_open {
                out.failure_event = true;
            } else if next.failures >= t.failure_issue_threshold.max(1) {
                next.incident_open = true;
                out.open_incident = true;
                out.failure_event = true;
            }
        }
    }
    out.facts = next;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Input::*;

    const T22: Thresholds = Thresholds {
        failure_issue_threshold: 2,
        recovery_threshold: 2,
    };
    const T11: Thresholds = Thresholds {
        failure_issue_threshold: 1,
        recovery_threshold: 1,
    };

    /// (open, event, resolve, incident open after) of one step.
    type Row = (bool, bool, bool, bool);

    /// Runs `inputs` from empty facts.
    fn run(t: &Thresholds, inputs: &[Input]) -> Vec<Row> {
        let mut f = Facts::default();
        inputs
            .iter()
            .map(|i| {
                let e = step(&f, *i, t);
                f = e.facts;
                (
                    e.open_incident,
                    e.failure_event,
                    e.resolve_incident,
                    f.incident_open,
                )
            })
            .collect()
    }

    #[test]
    fn table() {
        let n = (false, false, false, false);
        let open = (true, true, false, true);
        let more = (false, true, false, true);
        let held = (false, false, false, true);
        let resolve = (false, false, true, false);
        let cases: &[(&Thresholds, &[Input], &[Row])] = &[
            // Below the threshold nothing opens; an ok resets the streak.
            (&T22, &[Missed, Ok, Missed, Ok], &[n, n, n, n]),
            // The second consecutive failure opens; later ones add events.
            (&T22, &[Missed, Timeout, Error], &[n, open, more]),
            // Recovery needs two consecutive oks; a failure in between adds an event and
            // starts the count again.
            (
                &T22,
                &[Error, Error, Ok, Error, Ok, Ok],
                &[n, open, held, more, held, resolve],
            ),
            // A new streak after recovery opens again (the store turns it into a regression
            // of the same issue).
            (
                &T22,
                &[Error, Error, Ok, Ok, Missed, Missed],
                &[n, open, held, resolve, n, open],
            ),
            // In progress and unknown check-ins change nothing.
            (&T22, &[Error, InProgress, Unknown, Error], &[n, n, n, open]),
            (&T11, &[Error, Ok, Error], &[open, resolve, open]),
            (&T11, &[Ok, Ok, InProgress], &[n, n, n]),
        ];
        for (t, inputs, want) in cases {
            assert_eq!(&run(t, inputs), want, "{inputs:?}");
        }
    }

    #[test]
    fn counters_and_status() {
        let f = Facts::default();
        let e = step(&f, Missed, &T22);
        assert_eq!(
            e.facts,
            Facts {
                failures: 1,
                oks: 0,
                incident_open: false
            }
        );
        assert_eq!(status(&e.facts, Missed), "error");
        let e = step(&e.facts, Ok, &T22);
        assert_eq!(
            e.facts,
            Facts {
                failures: 0,
                oks: 1,
                incident_open: false
            }
        );
        assert_eq!(status(&e.facts, Ok), "ok");
        assert_eq!(status(&Facts::default(), InProgress), "active");
        let open = Facts {
            failures: 3,
            oks: 1,
            incident_open: true,
        };
        assert_eq!(status(&open, Ok), "error");
        // Saturating: a very long streak never overflows.
        let long = Facts {
            failures: u32::MAX,
            oks: 0,
            incident_open: true,
        };
        assert_eq!(step(&long, Error, &T22).facts.failures, u32::MAX);
    }
}
