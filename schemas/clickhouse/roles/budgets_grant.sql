-- Optional, after readonly_user.sql: let the dashboard's user set budgets (the Budgets page,
-- for the admin and finance roles). Like triage_grant.sql: readonly = 0 and INSERT on budgets
-- only (a removal is a row too), no other table, no DDL, no ALTER or DELETE.
ALTER USER {user} SETTINGS readonly = 0;
GRANT INSERT ON {db}.budgets TO {user};
