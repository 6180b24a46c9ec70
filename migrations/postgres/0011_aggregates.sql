-- The same as migrations/sqlite/0011_aggregates.sql (which explains the tables), in
-- PostgreSQL types.
CREATE TABLE issue_tags (
    issue_id    BIGINT NOT NULL,
    project_id  BIGINT NOT NULL,
    environment TEXT   NOT NULL,
    key         TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    count       BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    PRIMARY KEY (issue_id, environment, key, value)
);
CREATE INDEX issue_tags_by_value ON issue_tags
    (project_id, key, value, environment, last_seen DESC, issue_id DESC, count, first_seen);

CREATE TABLE issue_stats (
    issue_id    BIGINT NOT NULL,
    environment TEXT   NOT NULL,
    bucket      BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (issue_id, bucket, environment)
);

ALTER TABLE issues ADD COLUMN user_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE issues ADD COLUMN user_sketch BYTEA;

CREATE INDEX issues_by_first_seen ON issues (project_id, first_seen DESC, id DESC);
CREATE INDEX issues_by_count ON issues (project_id, event_count DESC, id DESC);
CREATE INDEX issues_by_users ON issues (project_id, user_count DESC, id DESC);
