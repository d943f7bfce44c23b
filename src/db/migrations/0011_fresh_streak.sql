-- Resuming a job starts a fresh failure streak (issue 14.7). Without this, a
-- job auto-paused after N failures and resumed by an operator kept its old
-- streak: its first failure after the resume re-paused it at once and its
-- failure episode (and notification) was the old one. A BEFORE trigger covers
-- every way a job becomes active again: op_resume, an expired pause, apply.
CREATE FUNCTION crondeck.jobs_fresh_streak() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.failure_streak := 0;
    NEW.failure_streak_since := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_fresh_streak_on_resume
    BEFORE UPDATE OF active ON crondeck.jobs
    FOR EACH ROW WHEN (NOT OLD.active AND NEW.active)
    EXECUTE FUNCTION crondeck.jobs_fresh_streak();
