-- Change tracking for the console's incremental refresh (issue 15).
--
-- Every job row carries the id of the transaction that last wrote it
-- (`change_xid`, the 64-bit `pg_current_xact_id()` as bigint), stamped by a
-- trigger in the same transaction as the change, and indexed. A removed job
-- leaves a tombstone with the removing transaction's id.
--
-- A reader that took snapshot S reads, next time, the rows and tombstones
-- with change_xid >= pg_snapshot_xmin(S): every transaction whose changes S
-- did not see was either running when S was taken (so its id is >= S's
-- xmin) or began after it (id >= S's xmax). A sequence number would not do:
-- numbers are handed out before commit, so a transaction that took 100 and
-- commits after one that took 101 would fall behind a watermark of 101.

ALTER TABLE crondeck.jobs ADD COLUMN change_xid bigint NOT NULL DEFAULT 0;
CREATE INDEX jobs_change_xid_idx ON crondeck.jobs (change_xid);

CREATE FUNCTION crondeck.jobs_stamp_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.change_xid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION crondeck.jobs_stamp_change() FROM PUBLIC;

CREATE TRIGGER jobs_stamp_change
    BEFORE INSERT OR UPDATE ON crondeck.jobs
    FOR EACH ROW EXECUTE FUNCTION crondeck.jobs_stamp_change();

-- Removed jobs, kept for a day: a console whose last refresh is older than
-- that reloads everything (see tui::data).
CREATE TABLE crondeck.jobs_removed (
    job_id     bigint NOT NULL,
    change_xid bigint NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_removed_change_xid_idx ON crondeck.jobs_removed (change_xid);
CREATE INDEX jobs_removed_at_idx ON crondeck.jobs_removed (removed_at);

-- Nobody writes the tombstones but this trigger (as the schema owner).
REVOKE ALL ON crondeck.jobs_removed FROM PUBLIC;
GRANT SELECT ON crondeck.jobs_removed TO crondeck_viewer, crondeck_scheduler;

CREATE FUNCTION crondeck.jobs_record_removal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM crondeck.jobs_removed WHERE removed_at < now() - interval '1 day';
    INSERT INTO crondeck.jobs_removed (job_id, change_xid)
    SELECT id, pg_current_xact_id()::text::bigint FROM removed;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION crondeck.jobs_record_removal() FROM PUBLIC;

CREATE TRIGGER jobs_record_removal
    AFTER DELETE ON crondeck.jobs
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION crondeck.jobs_record_removal();
