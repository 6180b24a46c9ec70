-- The ingestion core: projects and their DSN keys, API tokens, issues with denormalized
-- figures, grouping hashes, and events with their payloads stored compressed.
-- Times are microseconds since the Unix epoch (UTC) in INTEGER columns: cheap to compare and
-- identical on both backends.

CREATE TABLE projects (
    id            INTEGER PRIMARY KEY,
    slug          TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    public_key    TEXT    NOT NULL UNIQUE,
    -- next per-project issue number for short ids (DEFAULT-1, DEFAULT-2, ...)
    next_short_id INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    -- SHA-256 of the token; the token itself is shown once and never stored
    token_hash TEXT    NOT NULL UNIQUE,
    label      TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE issues (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects (id),
    short_number INTEGER NOT NULL,
    title        TEXT    NOT NULL,
    culprit      TEXT    NOT NULL,
    level        TEXT    NOT NULL,
    platform     TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'unresolved',
    event_count  INTEGER NOT NULL DEFAULT 0,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    UNIQUE (project_id, short_number)
);
CREATE INDEX issues_by_last_seen ON issues (project_id, last_seen DESC, id DESC);

-- An event joins the issue any of its hashes is linked to; grouping_version records which
-- scheme produced the hash so a later scheme can coexist without splitting issues.
CREATE TABLE grouping_hashes (
    project_id       INTEGER NOT NULL,
    hash             TEXT    NOT NULL,
    issue_id         INTEGER NOT NULL REFERENCES issues (id),
    grouping_version TEXT    NOT NULL,
    PRIMARY KEY (project_id, hash)
) WITHOUT ROWID;

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL,
    -- the 16 bytes of the event id: half the index of its hex text
    event_id      BLOB    NOT NULL,
    issue_id      INTEGER NOT NULL,
    timestamp     INTEGER NOT NULL,
    received      INTEGER NOT NULL,
    -- how `payload` is encoded: see src/payload.rs
    payload_codec TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    UNIQUE (project_id, event_id)
);
CREATE INDEX events_by_issue ON events (issue_id, timestamp DESC, id DESC);
