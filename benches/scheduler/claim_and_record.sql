-- pgbench script for scenario 3: the least a scheduler must do per run, on
-- crondeck's own tables and indexes. One claim transaction (take the most
-- urgent due job with SKIP LOCKED, insert its run, point the job at it and
-- advance nextcall) and one execute-and-record transaction (the job's
-- `SELECT 1`, then the fenced finish of the run and the freeing of the job).
-- The updates fire crondeck's NOTIFY triggers, as the scheduler's do.
BEGIN;
SELECT id AS job_id FROM crondeck.jobs WHERE active AND numbercall <> 0 AND nextcall <= now() AND running_run_id IS NULL AND action_kind = 'sql' ORDER BY priority, nextcall LIMIT 1 FOR UPDATE SKIP LOCKED \gset
INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, ticks, status, node_id, node_name, started_at) SELECT id, 'schedule', nextcall, 1, 'running', 'pgbench', 'pgbench', clock_timestamp() FROM crondeck.jobs WHERE id = :job_id RETURNING id AS run_id \gset
UPDATE crondeck.jobs SET running_run_id = :run_id, running_node_id = 'pgbench', running_since = clock_timestamp(), last_run_id = :run_id, last_started_at = clock_timestamp(), last_status = 'running', nextcall = nextcall + interval '1 second' * (floor(extract(epoch FROM now() - nextcall)) + 1) WHERE id = :job_id;
COMMIT;
BEGIN;
SELECT 1;
UPDATE crondeck.runs SET status = 'succeeded', ended_at = greatest(clock_timestamp(), started_at), rows_affected = 1 WHERE id = :run_id AND node_id = 'pgbench' AND status = 'running' RETURNING started_at, ended_at;
UPDATE crondeck.jobs SET running_run_id = NULL, running_node_id = NULL, running_since = NULL, last_ended_at = clock_timestamp(), last_status = 'succeeded', last_success_at = clock_timestamp(), failure_streak = 0 WHERE id = :job_id AND running_run_id = :run_id;
COMMIT;
