-- The issue lifecycle: states beyond `status`, releases in the order a project first saw them,
-- the history of every transition, alert switches and channels per project, and the durable
-- outbox alerts are delivered from.

ALTER TABLE projects ADD COLUMN alert_on_new_issue INTEGER NOT NULL DEFAULT 1;
ALTER TABLE projects ADD COLUMN alert_on_regression INTEGER NOT NULL DEFAULT 1;
ALTER TABLE projects ADD COLUMN alert_on_unmute INTEGER NOT NULL DEFAULT 1;

-- The rest of the issue's state as JSON (substatus, resolution release, mute details):
-- read and written whole by the pure state machine (src/issue/state.rs).
ALTER TABLE issues ADD COLUMN state TEXT NOT NULL DEFAULT '{}';
ALTER TABLE issues ADD COLUMN substatus TEXT;
-- Muted issues whose mute ends at a time: the background unmuter looks them up by it.
ALTER TABLE issues ADD COLUMN mute_until INTEGER;
CREATE INDEX issues_by_mute_until ON issues (mute_until) WHERE mute_until IS NOT NULL;

CREATE TABLE releases (
    project_id INTEGER NOT NULL,
    version    TEXT    NOT NULL,
    -- position in the order the project first saw its releases
    seq        INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (project_id, version)
) WITHOUT ROWID;

CREATE TABLE issue_activity (
    id         INTEGER PRIMARY KEY,
    issue_id   INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    -- "system" or "token:<id>"
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    data       TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE INDEX activity_by_issue ON issue_activity (issue_id, id DESC);

CREATE TABLE alert_channels (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id),
    -- webhook | slack | email
    kind       TEXT    NOT NULL,
    -- kind-specific settings as JSON: {"url", "secret"} / {"url"} / {"to": [...]}
    config     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    channel_id      INTEGER NOT NULL,
    issue_id        INTEGER NOT NULL,
    -- new_issue | regression | unmute
    kind            TEXT    NOT NULL,
    -- stable per (transition, channel): receivers can drop repeats
    idempotency_key TEXT    NOT NULL UNIQUE,
    -- what the message says, fixed when the alert was written
    payload         TEXT    NOT NULL,
    -- pending | delivered | failed
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX outbox_due ON alert_outbox (status, next_attempt_at);
