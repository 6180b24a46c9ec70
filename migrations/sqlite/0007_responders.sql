-- Responders (django-issue's Responder and ResponderAction): a pattern over issue titles with
-- filters, and a ladder of actions, each run once per episode of a matching issue at the
-- episode's start plus its delay, while the issue stays open.

CREATE TABLE responders (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects (id),
    name          TEXT    NOT NULL DEFAULT '',
    watch_pattern TEXT    NOT NULL,
    -- lowest level that matches (NULL: any) and the environment (NULL: any)
    min_level     TEXT,
    environment   TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    -- the ordered actions: [{"target", "delay_sec", "params"}]
    actions       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX responders_by_project ON responders (project_id);

-- One row per (episode, responder, action), written in the transaction that starts the
-- episode; claimed with a lease when due, like the alert outbox.
CREATE TABLE responder_runs (
    id              INTEGER PRIMARY KEY,
    responder_id    INTEGER NOT NULL,
    action_index    INTEGER NOT NULL,
    issue_id        INTEGER NOT NULL,
    episode_id      INTEGER NOT NULL,
    -- the action as it was when scheduled
    target          TEXT    NOT NULL,
    params          TEXT    NOT NULL,
    -- pending | delivered | failed | cancelled
    status          TEXT    NOT NULL DEFAULT 'pending',
    due_at          INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- the process holding (or last holding) the lease, which ends at next_attempt_at
    claimed_by      TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    -- why it was cancelled
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    done_at         INTEGER,
    UNIQUE (episode_id, responder_id, action_index)
);
CREATE INDEX responder_runs_due ON responder_runs (status, next_attempt_at);
CREATE INDEX responder_runs_by_issue ON responder_runs (issue_id, id);

-- Every attempt of every run: what the system has done about an issue.
CREATE TABLE responder_attempts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    -- delivered | retry | failed
    outcome     TEXT    NOT NULL,
    http_status INTEGER,
    error       TEXT,
    claimed_by  TEXT
);
CREATE INDEX responder_attempts_by_run ON responder_attempts (run_id, id);
