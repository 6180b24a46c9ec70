-- Events accepted per project in fixed windows (60 s and 3600 s), added to by every process
-- once a second, so that a project's quota holds across processes and restarts. Rows of
-- windows long past are deleted by the same sync.
CREATE TABLE quota_usage (
    project_id   INTEGER NOT NULL,
    window_secs  INTEGER NOT NULL,
    -- unix seconds at which the window starts
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (project_id, window_secs, window_start)
) WITHOUT ROWID;
