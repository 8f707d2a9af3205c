-- The role the dbops worker connects as, with the privileges its work needs and no more.
-- Run it as the master user (rds_superuser on RDS, a superuser elsewhere), connected to the
-- application database. Running it again changes nothing. The local provider runs this file on
-- every instance it creates, and its instances' endpoints connect as this role.

-- Extensions only a (rds_)superuser may create: pgvector for the embeddings, the view of
-- pg_stat_statements (its library must be in shared_preload_libraries) for the health check, and
-- amcheck for the DR test's integrity checks (every copy restored from this database has it).
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS amcheck;

-- No password here: set one with \password, or use IAM database authentication on RDS.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbops') THEN
    CREATE ROLE dbops LOGIN;
  END IF;
  -- Connect; create the dbops schema (backfill checkpoints, and the RPO heartbeat the worker writes
  -- every few seconds: it creates dbops.rpo_heartbeat itself, so it owns it).
  EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO dbops', current_database());
END
$$;

-- Migrations create the application's tables and indexes: the worker owns them, which ALTER,
-- CREATE INDEX CONCURRENTLY, backfill UPDATEs, VACUUM and ANALYZE of those tables require.
GRANT USAGE, CREATE ON SCHEMA public TO dbops;
-- Names without a schema mean public: the default search path starts with the role's own name,
-- which would put the migrations' tables into the dbops schema once that exists.
ALTER ROLE dbops SET search_path = public;

-- Every session, replication and statement statistics: the health check, the backfill throttle
-- and a migration's report of who blocks it. Without it they read zeros and NULLs.
GRANT pg_monitor TO dbops;

-- The DR test's checks on a restored copy: amcheck's functions (revoked from PUBLIC), and reading
-- every table, those of other roles too (row counts, contents).
GRANT EXECUTE ON FUNCTION verify_heapam(regclass, boolean, boolean, text, bigint, bigint) TO dbops;
GRANT EXECUTE ON FUNCTION bt_index_check(regclass, boolean) TO dbops;
GRANT pg_read_all_data TO dbops;
