-- Live runs (issues 12.2, 14.1, 14.2): while a run is `running`, its node
-- writes the output captured so far into stdout/stderr (at most about once a
-- second, fenced like the finish), and the progress the job reports.
-- progress_done/progress_total: the job's own count ("4000 of 10000");
-- progress_total is NULL when the job reported no total. progress_at: when
-- the node last recorded progress (database time), for the estimated finish.
-- output_at: when the node last wrote live output; NULL for a run whose
-- output was only recorded at its end.
ALTER TABLE crondeck.runs
    ADD COLUMN progress_done  bigint,
    ADD COLUMN progress_total bigint,
    ADD COLUMN progress_at    timestamptz,
    ADD COLUMN output_at      timestamptz,
    ADD CONSTRAINT runs_progress_sane CHECK (
        (progress_done IS NULL OR progress_done >= 0)
        AND (progress_total IS NULL OR (progress_total >= 0 AND progress_done IS NOT NULL
                                        AND progress_done <= progress_total)));
