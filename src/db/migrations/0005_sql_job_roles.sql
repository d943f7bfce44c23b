-- crondeck schema, version 5: `run_as` is a boundary (issue 11, point 4).
--
-- 1. A job without `run_as` no longer runs as the node's own role (which may
--    record runs): it runs as crondeck_job, a role created here that is a
--    member of nothing and holds nothing but TEMPORARY on this database (the
--    node creates the job's temporary wrapper function as the job's role).
--    Grant it what such jobs need, e.g. GRANT INSERT ON app.t TO crondeck_job.
--    Nodes become it with SET ROLE, so crondeck_scheduler is a member.
-- 2. Whoever defines what an SQL job executes (its command, its run_as, or
--    turning it into an SQL job) must be a member of the role it runs as, so
--    an admin cannot borrow a role they do not hold through a node that does.
--    Enforced by a trigger: a direct INSERT or UPDATE is checked like `add`,
--    `set` and `apply`.

DO $$
BEGIN
    CREATE ROLE crondeck_job NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END;
$$;

GRANT crondeck_job TO crondeck_scheduler;

-- Only the database's owner (or a superuser) can grant this; for anyone else
-- PostgreSQL warns "no privileges were granted" and goes on, which is right:
-- PUBLIC has TEMPORARY by default (see README, "SQL jobs").
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO crondeck_job', current_database());
END;
$$;

CREATE FUNCTION crondeck.jobs_check_run_as() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.action_kind <> 'sql' OR NEW.run_as IS NULL OR NEW.run_as = 'crondeck_job' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.run_as IS NOT DISTINCT FROM OLD.run_as
       AND NEW.command IS NOT DISTINCT FROM OLD.command
       AND NEW.action_kind IS NOT DISTINCT FROM OLD.action_kind THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = NEW.run_as) THEN
        RAISE EXCEPTION 'run_as role % of job % does not exist (create it, or leave run_as out to run as crondeck_job)',
                quote_ident(NEW.run_as), quote_literal(NEW.name)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_run_as_member';
    END IF;
    IF NOT pg_has_role(session_user, NEW.run_as, 'MEMBER') THEN
        RAISE EXCEPTION 'run_as role % of job %: login % is not a member of it, so it may not define what runs as it (GRANT % TO %, or choose a role you hold)',
                quote_ident(NEW.run_as), quote_literal(NEW.name), quote_ident(session_user),
                quote_ident(NEW.run_as), quote_ident(session_user)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_run_as_member';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION crondeck.jobs_check_run_as() FROM PUBLIC;

CREATE TRIGGER jobs_check_run_as
    BEFORE INSERT OR UPDATE OF run_as, command, action_kind ON crondeck.jobs
    FOR EACH ROW EXECUTE FUNCTION crondeck.jobs_check_run_as();
