-- What the issue API reads instead of scanning events (issue 10), written in the ingest batch's
-- transaction with the event rows. Like `issues.event_count`, these say what arrived: retention
-- deletes events but never lowers them. Both tables are WITHOUT ROWID: every batch upserts
-- rows by their primary key, which is then the one B-tree searched and written (an issue's rows
-- sit together on few pages), rather than a key index plus the rowid table.

-- Per issue, environment ('' when the event has none) and tag value (the event's tags plus
-- `level`, `environment` and `release`, as `normalize::summarize` gives them): how many events,
-- first and last seen (µs). Tag summaries, filtered lists (their counts, `lastSeen` and sort)
-- and first/last release come from here.
CREATE TABLE issue_tags (
    issue_id    INTEGER NOT NULL,
    project_id  INTEGER NOT NULL,
    environment TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (issue_id, environment, key, value)
) WITHOUT ROWID;
-- Tag searches, and a list filtered by one environment and tag value in `lastSeen` order
-- (issue lists' default): read in index order up to the page's limit, no sort. `count` and
-- `first_seen` ride along so that the other sorts of a filtered list read only this index
-- (no lookup of each row): costless at write time, since every upsert moves the entry for
-- `last_seen` anyway.
CREATE INDEX issue_tags_by_value ON issue_tags
    (project_id, key, value, environment, last_seen DESC, issue_id DESC, count, first_seen);

-- Events per issue, environment and hour (`bucket`: the hour's start, µs): `stats` of lists.
CREATE TABLE issue_stats (
    issue_id    INTEGER NOT NULL,
    environment TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (issue_id, bucket, environment)
) WITHOUT ROWID;

-- Distinct users (id, else email, else username, else IP): the count, and the compact form it
-- is kept exact or estimated from (see src/issue/users.rs).
ALTER TABLE issues ADD COLUMN user_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE issues ADD COLUMN user_sketch BLOB;

-- The list's other sort orders (`new`, `freq`, `user`), like issues_by_last_seen.
CREATE INDEX issues_by_first_seen ON issues (project_id, first_seen DESC, id DESC);
CREATE INDEX issues_by_count ON issues (project_id, event_count DESC, id DESC);
CREATE INDEX issues_by_users ON issues (project_id, user_count DESC, id DESC);
