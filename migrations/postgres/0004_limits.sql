-- Per-project quota and retention settings, and the index retention walks (PostgreSQL): the
-- same as migrations/sqlite/0004_limits.sql.
ALTER TABLE projects
    ADD COLUMN rate_limit_minute BIGINT CHECK (rate_limit_minute > 0),
    ADD COLUMN rate_limit_hour BIGINT CHECK (rate_limit_hour > 0),
    ADD COLUMN retention_days BIGINT CHECK (retention_days > 0),
    ADD COLUMN retention_max_events BIGINT CHECK (retention_max_events > 0);

-- Built inside the migration's transaction (CONCURRENTLY cannot be): on a large existing
-- events table this blocks ingestion once, while the upgrade starts.
CREATE INDEX events_by_project ON events (project_id, id);
