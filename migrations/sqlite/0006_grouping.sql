-- Grouping configuration per project, and merged issues.
--
-- A project records the grouping scheme it hashes with and its own rules (Sentry's
-- `fingerprintingRules` and `groupingEnhancements`). After a change of scheme or rules, the
-- previous configuration stays as the secondary one until `secondary_grouping_expiry` (µs):
-- meanwhile events are hashed with both, the secondary hashes find the issues the project
-- already has, and the primary hashes are linked to them. Existing projects were written with
-- the first scheme, `sh-2026-11`; the server upgrades them at startup with a transition.
ALTER TABLE projects ADD COLUMN grouping_config TEXT NOT NULL DEFAULT 'sh-2026-11';
ALTER TABLE projects ADD COLUMN fingerprinting_rules TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN grouping_enhancements TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN secondary_grouping_config TEXT;
ALTER TABLE projects ADD COLUMN secondary_fingerprinting_rules TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN secondary_grouping_enhancements TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN secondary_grouping_expiry INTEGER;

-- An issue merged into another keeps its row as a tombstone pointing at the target, so its old
-- id still answers (with the target) and a writer holding a stale hash link notices.
ALTER TABLE issues ADD COLUMN merged_into INTEGER;
CREATE INDEX grouping_hashes_by_issue ON grouping_hashes (issue_id);
