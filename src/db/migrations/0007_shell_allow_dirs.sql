-- The shell allow-list names directories (issue 11, point 3). The node checks
-- a command in Rust right before it runs it (scheduler::allow::argv_for);
-- this is the same textual rule, so that a node does not claim what it
-- would refuse. A command is admitted by a non-empty list only if:
--   * it has no shell metacharacter ; | & $ ` ( ) < > \ and no newline, and
--     its quotes are balanced;
--   * its program (the first word after blanks, up to a blank) has no quote,
--     is absolute, has no "." or ".." segment and no glob character * ? [;
--   * the program lies strictly inside an allowed directory: an entry
--     /opt/jobs or /opt/jobs/ admits /opt/jobs/x, never /opt/jobsEVIL/x.
CREATE FUNCTION crondeck.shell_admits(command text, shell_allow text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT length(translate(command, E';|&$`()<>\\\n', '')) = length(command)
       AND command ~ '^([^''"]|''[^'']*''|"[^"]*")*$'
       AND program <> ''
       AND strpos(program, '''') = 0
       AND strpos(program, '"') = 0
       AND starts_with(program, '/')
       AND NOT (string_to_array(program, '/') && ARRAY['.', '..'])
       AND length(translate(program, '*?[', '')) = length(program)
       AND EXISTS (SELECT 1 FROM unnest(shell_allow) AS entry
                   WHERE starts_with(program, rtrim(entry, '/') || '/')
                     AND length(program) > length(rtrim(entry, '/')) + 1)
    FROM (SELECT coalesce(substring(command FROM '^[ \t]*([^ \t]*)'), '') AS program) AS p;
$$;

CREATE OR REPLACE FUNCTION crondeck.can_run(action_kind text, command text, allow_shell boolean,
                                            shell_allow text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT action_kind = 'sql'
        OR (allow_shell
            AND (coalesce(cardinality(shell_allow), 0) = 0
                 OR coalesce(crondeck.shell_admits(command, shell_allow), false)));
$$;
