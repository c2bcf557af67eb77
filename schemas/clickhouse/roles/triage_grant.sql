-- Optional, after readonly_user.sql: let the dashboard's user record alert triage, its one
-- write. An INSERT needs readonly = 0, so the setting goes and the grants alone decide: SELECT
-- on the database, INSERT on alert_triage only (no other table, no DDL, no ALTER or DELETE).
ALTER USER {user} SETTINGS readonly = 0;
GRANT INSERT ON {db}.alert_triage TO {user};
