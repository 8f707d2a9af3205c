resource "aws_db_parameter_group" "postgres15" {
  name        = "${var.identifier}-postgres15"
  family      = "postgres15"
  description = "${var.identifier}: pg_stat_statements, DDL and slow-query logging, TLS only"
  tags        = var.tags

  # The runbook sets "pg_stat_statements,pgvector". pgvector is not a preloaded library: it is an
  # extension loaded on demand by CREATE EXTENSION vector, and RDS rejects an unknown library name
  # here, so the runbook's value would fail. Only pg_stat_statements needs the preload.
  # Static parameter: takes effect at the next reboot.
  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  # Milliseconds: log every statement slower than one second.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  # Static parameter: takes effect at the next reboot.
  parameter {
    name         = "max_connections"
    value        = "200"
    apply_method = "pending-reboot"
  }

  # Refuse unencrypted connections: IAM authentication tokens are bearer credentials for 15 minutes.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # The runbook's tuning by ALTER SYSTEM (work_mem, shared_buffers, effective_cache_size, autovacuum)
  # cannot run on RDS, where no user has the superuser right ALTER SYSTEM needs; such settings
  # belong in this parameter group. They are left at the RDS defaults, which size shared_buffers and
  # effective_cache_size from the instance memory: the runbook's work_mem of 256MB for each of
  # 200 connections could ask for 50 GiB on a 16 GiB instance. Set work_mem per session or per role
  # (ALTER ROLE ... SET work_mem) for the vector index builds instead.

  lifecycle {
    create_before_destroy = true
  }
}
