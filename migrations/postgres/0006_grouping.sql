-- Grouping configuration per project, and merged issues (PostgreSQL): the same as
-- migrations/sqlite/0006_grouping.sql, which explains the columns.
ALTER TABLE projects
    ADD COLUMN grouping_config TEXT NOT NULL DEFAULT 'sh-2026-11',
    ADD COLUMN fingerprinting_rules TEXT NOT NULL DEFAULT '',
    ADD COLUMN grouping_enhancements TEXT NOT NULL DEFAULT '',
    ADD COLUMN secondary_grouping_config TEXT,
    ADD COLUMN secondary_fingerprinting_rules TEXT NOT NULL DEFAULT '',
    ADD COLUMN secondary_grouping_enhancements TEXT NOT NULL DEFAULT '',
    ADD COLUMN secondary_grouping_expiry BIGINT;

ALTER TABLE issues ADD COLUMN merged_into BIGINT;
CREATE INDEX grouping_hashes_by_issue ON grouping_hashes (issue_id);
