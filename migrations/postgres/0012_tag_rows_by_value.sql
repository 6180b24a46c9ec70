-- The same as migrations/sqlite/0012_tag_rows_by_value.sql (which explains why). On PostgreSQL,
-- an upsert that changes no indexed column and finds room on its page is a HOT update: no
-- index is written at all, hence the fill factor.
DROP INDEX issue_tags_by_value;
ALTER TABLE issue_tags DROP CONSTRAINT issue_tags_pkey;
ALTER TABLE issue_tags ADD PRIMARY KEY (project_id, key, value, environment, issue_id);
CREATE INDEX issue_tags_by_issue ON issue_tags (issue_id, key, value, environment);
ALTER TABLE issue_tags SET (fillfactor = 80);

-- The aggregate journal of migrations/sqlite/0012_tag_rows_by_value.sql. Any writer of any
-- process may write any entry's sums: an entry is taken by the `DELETE ... RETURNING` of the
-- one transaction that writes them, so it counts once, and a crashed process's entries are
-- written by the next flush of any other (or of the restarted one).
CREATE TABLE aggregate_journal (
    id    BIGSERIAL PRIMARY KEY,
    entry BYTEA NOT NULL
);
