-- Project DSN keys and deletion (issue 10).
--
-- A project has any number of DSN keys; ingestion accepts a request only with an active key
-- of a live project. `projects.public_key` stays (NOT NULL UNIQUE, written with the first key
-- when a project is created) but is no longer read for authentication.
CREATE TABLE project_keys (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id),
    public_key TEXT    NOT NULL UNIQUE,
    label      TEXT    NOT NULL DEFAULT '',
    is_active  INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE INDEX project_keys_by_project ON project_keys (project_id, id);
INSERT INTO project_keys (project_id, public_key, label, is_active, created_at)
    SELECT id, public_key, 'Default', 1, created_at FROM projects ORDER BY id;

-- A deleted project (µs): gone from every read at once, its rows purged in the background.
ALTER TABLE projects ADD COLUMN deleted_at INTEGER;

-- Deletions whose rows are still being removed, in slices, by every process's retention
-- loop (`store::purge`): `kind` 'issue' or 'project', `target_id` its id. A row survives a
-- restart, so a purge always finishes.
CREATE TABLE purges (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    target_id  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- A deleted issue's outbox rows are found by issue.
CREATE INDEX outbox_by_issue ON alert_outbox (issue_id);
