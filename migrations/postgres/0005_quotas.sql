-- Events accepted per project in fixed windows (60 s and 3600 s), added to by every process
-- once a second, so that a project's quota holds across processes and restarts. Rows of
-- windows long past are deleted by the same sync.
CREATE TABLE quota_usage (
    project_id   BIGINT NOT NULL,
    window_secs  BIGINT NOT NULL,
    -- unix seconds at which the window starts
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (project_id, window_secs, window_start)
);
