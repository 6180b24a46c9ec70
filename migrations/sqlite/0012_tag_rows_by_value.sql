-- `issue_tags` keyed by value (issue 10, after measuring 0011 at ingestion): with the value index
-- of 0011 holding `last_seen` (and `count`), every upsert of a batch moved an index entry to
-- another page, which made the aggregates cost a third of the stored events/s with 200 issues
-- and far more with 10,000. Keyed (project, key, value, environment, issue), a filtered list
-- reads its matches as one contiguous range of the table, figures included, and an upsert
-- rewrites its row in place; the one secondary index (an issue's rows, for its tag summaries,
-- merges and purges) holds no column that an upsert changes, so upserts never touch it.
CREATE TABLE issue_tags_next (
    issue_id    INTEGER NOT NULL,
    project_id  INTEGER NOT NULL,
    environment TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (project_id, key, value, environment, issue_id)
) WITHOUT ROWID;
INSERT INTO issue_tags_next
    SELECT issue_id, project_id, environment, key, value, count, first_seen, last_seen
    FROM issue_tags;
DROP TABLE issue_tags;
ALTER TABLE issue_tags_next RENAME TO issue_tags;
-- The rest of the key (project_id, environment) is in every entry of a WITHOUT ROWID index.
CREATE INDEX issue_tags_by_issue ON issue_tags (issue_id, key, value);

-- While the writer is saturated (more events already waiting), a batch appends its events'
-- aggregate facts here (`issue::pending`: ~50 bytes an event) instead of upserting their
-- rows; a flush, as soon as a batch finds none waiting and at the latest a second on, takes
-- the entries, writes their sums and empties the table, in one transaction. A hot issue's tag
-- rows are then written once per flush rather than once per batch, and what a crash leaves
-- here is written by the next flush after the restart.
CREATE TABLE aggregate_journal (
    id    INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);
