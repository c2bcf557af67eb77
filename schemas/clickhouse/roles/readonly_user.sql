-- The dashboard's own ClickHouse user: reads the computewatch database and nothing else.
-- Server mode only: the embedded engine (chdb://) has no users or grants.
--
-- Applied by pipeline.storage.client.create_dashboard_user (README, "Security"), which puts a
-- checked, back-quoted identifier in place of {user} and {db} (names match
-- [A-Za-z_][A-Za-z0-9_]*); the password is the server-side query parameter {password:String}
-- and is never part of the SQL text. Running it again sets a new password and takes back any
-- other grant (rotation).
--
-- readonly = 2, not 1: the alerts feed sets join_use_nulls for its query, which readonly = 1
-- refuses. readonly = 2 still refuses every write and DDL, and changing readonly itself.
-- Triage (acknowledge/resolve) is the dashboard's one write: triage_grant.sql allows it.
CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_password BY {password:String};
ALTER USER {user}
    IDENTIFIED WITH sha256_password BY {password:String}
    DEFAULT DATABASE {db}
    SETTINGS readonly = 2;
REVOKE ALL ON *.* FROM {user};
GRANT SELECT ON {db}.* TO {user};
