-- The lifecycle engine's memory moves into the database, so that a restarted process, or
-- another one on the same database, decides the same: the mute's rolling counters, the
-- distinct users behind `ignoreUserCount`, the episodes responders will follow, and who holds
-- the lease of an outbox row.

-- JSON of `issue::plan::MuteCounters`; NULL unless muted with volume conditions.
ALTER TABLE issues ADD COLUMN counters TEXT;

-- Users seen by an issue while it is muted with a user limit (time of their latest event).
CREATE TABLE issue_users (
    issue_id  INTEGER NOT NULL,
    user_key  TEXT    NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (issue_id, user_key)
) WITHOUT ROWID;

-- An episode starts whenever an issue becomes open: created, regressed, unmuted, reopened.
CREATE TABLE issue_episodes (
    id         INTEGER PRIMARY KEY,
    issue_id   INTEGER NOT NULL,
    -- created | regressed | unmuted | reopened
    cause      TEXT    NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX episodes_by_issue ON issue_episodes (issue_id, id DESC);
INSERT INTO issue_episodes (issue_id, cause, started_at)
    SELECT id, 'created', first_seen FROM issues;

-- The process that claimed a pending row; its lease ends at `next_attempt_at`.
ALTER TABLE alert_outbox ADD COLUMN claimed_by TEXT;
