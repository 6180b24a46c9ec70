-- Cron monitors (issue 9): a monitor per (project, slug), its state per environment, and its
-- check-ins (received, missed, timed out). Flags are 0/1 integers in both dialects.

CREATE TABLE monitors (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    slug       TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (project_id, slug)
);

CREATE TABLE monitor_environments (
    id               INTEGER PRIMARY KEY,
    monitor_id       INTEGER NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    environment      TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'active',
    next_expected_at INTEGER,
    deadline_at      INTEGER,
    last_checkin_at  INTEGER,
    failures         INTEGER NOT NULL DEFAULT 0,
    oks              INTEGER NOT NULL DEFAULT 0,
    incident_open    INTEGER NOT NULL DEFAULT 0,
    issue_id         INTEGER,
    -- The check-in whose recovery resolves the incident, until the resolve is applied.
    resolve_marker   INTEGER,
    -- Who applies that resolve, until when (a lease another process takes over).
    claimed_by       TEXT,
    resolve_lease    INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (monitor_id, environment)
);
CREATE INDEX monitor_envs_by_deadline ON monitor_environments (deadline_at);
CREATE INDEX monitor_envs_resolving ON monitor_environments (resolve_marker)
    WHERE resolve_marker IS NOT NULL;

CREATE TABLE monitor_checkins (
    id             INTEGER PRIMARY KEY,
    monitor_env_id INTEGER NOT NULL REFERENCES monitor_environments (id) ON DELETE CASCADE,
    check_in_id    TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    duration       REAL,
    release        TEXT,
    environment    TEXT    NOT NULL,
    trace_id       TEXT,
    expected_at    INTEGER,
    timeout_at     INTEGER,
    received_at    INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- A failure that feeds the incident gets an event id; `event_stored` once it is stored.
    event_id       TEXT,
    event_stored   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX monitor_checkins_by_env ON monitor_checkins (monitor_env_id, id);
CREATE INDEX monitor_checkins_by_uuid ON monitor_checkins (monitor_env_id, check_in_id);
CREATE INDEX monitor_checkins_running ON monitor_checkins (timeout_at)
    WHERE status = 'in_progress';
CREATE INDEX monitor_checkins_unsent ON monitor_checkins (id)
    WHERE event_id IS NOT NULL AND event_stored = 0;
