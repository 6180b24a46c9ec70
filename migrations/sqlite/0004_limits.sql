-- Per-project settings for resource safety, and the index retention walks.
-- Quotas: events accepted per minute and per hour (NULL: no limit). Retention: how long, and
-- how many of the newest, events a project keeps (NULL: the server's default). A set value is
-- positive: "none" and "the default" are NULL, never 0.
ALTER TABLE projects ADD COLUMN rate_limit_minute INTEGER CHECK (rate_limit_minute > 0);
ALTER TABLE projects ADD COLUMN rate_limit_hour INTEGER CHECK (rate_limit_hour > 0);
ALTER TABLE projects ADD COLUMN retention_days INTEGER CHECK (retention_days > 0);
ALTER TABLE projects ADD COLUMN retention_max_events INTEGER CHECK (retention_max_events > 0);

-- A project's events in arrival order: retention deletes from the old end and finds the
-- newest N from the other. New rows append at the end of their project's range, so ingestion
-- dirties one rightmost leaf per project and batch, not a random page.
CREATE INDEX events_by_project ON events (project_id, id);
