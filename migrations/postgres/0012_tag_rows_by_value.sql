-- The same as migrations/sqlite/0012_tag_rows_by_value.sql (which explains why). On PostgreSQL,
-- an upsert that changes no indexed column and finds room on its page is a HOT update: no
-- index is written at all, hence the fill factor.
DROP INDEX issue_tags_by_value;
ALTER TABLE issue_tags DROP CONSTRAINT issue_tags_pkey;
ALTER TABLE issue_tags ADD PRIMARY KEY (project_id, key, value, environment, issue_id);
CREATE INDEX issue_tags_by_issue ON issue_tags (issue_id, key, value, environment);
ALTER TABLE issue_tags SET (fillfactor = 80);
