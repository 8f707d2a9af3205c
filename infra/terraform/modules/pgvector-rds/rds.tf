data "aws_subnet" "database" {
  for_each = toset(var.subnet_ids)
  id       = each.value
}

locals {
  subnet_zones = toset([for subnet in data.aws_subnet.database : subnet.availability_zone])
  # CA of the server certificate that clients verify (rds-ca-2019 expired in 2024).
  ca_cert_identifier = "rds-ca-rsa2048-g1"
  log_exports        = ["postgresql", "upgrade"]
}

resource "aws_db_instance" "primary" {
  identifier = var.identifier
  engine     = "postgres"
  # The runbook pins 15.4, a minor version RDS has since retired; the major version with automatic
  # minor upgrades in the maintenance window keeps the instance on a supported, patched release.
  engine_version             = var.engine_version
  auto_minor_version_upgrade = true
  instance_class             = var.instance_class

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.rds.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  port                   = var.port
  ca_cert_identifier     = local.ca_cert_identifier

  db_name  = var.database_name
  username = var.master_username
  # The runbook reads the password from a Secrets Manager data source into `password`, which puts
  # it in the plan and in the state file. RDS generates the master password, keeps it in Secrets
  # Manager (encrypted with our key) and rotates it: Terraform never sees it.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.rds.arn
  # Applications and the dbops worker log in with 15-minute IAM tokens instead of passwords.
  iam_database_authentication_enabled = true

  parameter_group_name = aws_db_parameter_group.postgres15.name

  backup_retention_period = var.backup_retention_days
  backup_window           = var.backup_window
  maintenance_window      = var.maintenance_window
  copy_tags_to_snapshot   = true
  # Keep the automated backups (the point-in-time restore window) if the instance is ever deleted.
  delete_automated_backups = false
  deletion_protection      = true
  skip_final_snapshot      = false
  # The runbook names it "mcp-demo-final-${timestamp()}": timestamp() changes on every plan, so
  # every plan would show a change to the instance. A fixed name is stable; RDS refuses to delete
  # the instance if a snapshot of that name already exists, so nothing is overwritten.
  final_snapshot_identifier = "${var.identifier}-final"

  enabled_cloudwatch_logs_exports       = local.log_exports
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.rds.arn
  performance_insights_retention_period = var.performance_insights_retention_days
  monitoring_interval                   = var.monitoring_interval_seconds
  monitoring_role_arn                   = aws_iam_role.monitoring.arn

  # Changes wait for the maintenance window unless applied by hand.
  apply_immediately = false
  tags              = var.tags

  depends_on = [aws_cloudwatch_log_group.rds, aws_iam_role_policy_attachment.monitoring]

  lifecycle {
    precondition {
      condition     = var.max_allocated_storage_gb > var.allocated_storage_gb
      error_message = "max_allocated_storage_gb must be greater than allocated_storage_gb, or storage autoscaling is off."
    }
    precondition {
      condition     = length(local.subnet_zones) >= 2
      error_message = "subnet_ids must span at least two availability zones for Multi-AZ."
    }
  }
}

# The runbook's read replica, for the read/write split: a second copy in another availability zone
# that serves read-only queries. Failover is the Multi-AZ standby's job, not the replica's.
resource "aws_db_instance" "replica" {
  #checkov:skip=CKV_AWS_133:PostgreSQL read replicas cannot be restored to a point in time; the primary's automated backups (30 days, replicated to the backup region) hold the same data, and promotion turns backups on.
  #checkov:skip=CKV_AWS_157:The read replica is a read-scaling copy in a second zone; high availability comes from the Multi-AZ primary, and a Multi-AZ replica would double its cost for no failover gain.
  identifier          = local.replica_identifier
  replicate_source_db = aws_db_instance.primary.identifier
  instance_class      = var.instance_class
  availability_zone   = var.replica_availability_zone
  multi_az            = false

  storage_type          = "gp3"
  max_allocated_storage = var.max_allocated_storage_gb
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.rds.arn

  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  ca_cert_identifier     = local.ca_cert_identifier

  iam_database_authentication_enabled = true
  parameter_group_name                = aws_db_parameter_group.postgres15.name
  auto_minor_version_upgrade          = true

  # No automated backups of the replica. RDS for PostgreSQL takes them on a replica from 14.1 on,
  # but cannot restore a replica to a point in time: they would be daily copies of the primary's
  # data, already kept 30 days and replicated to the backup region. Promoting the replica turns
  # them on (promote-read-replica --backup-retention-period); see docs/deployment.md.
  backup_retention_period = 0
  maintenance_window      = var.maintenance_window
  copy_tags_to_snapshot   = true
  deletion_protection     = true
  # A read replica cannot take a final snapshot; its data is the primary's.
  skip_final_snapshot = true

  enabled_cloudwatch_logs_exports       = local.log_exports
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.rds.arn
  performance_insights_retention_period = var.performance_insights_retention_days
  monitoring_interval                   = var.monitoring_interval_seconds
  monitoring_role_arn                   = aws_iam_role.monitoring.arn

  apply_immediately = false
  tags              = merge(var.tags, { Role = "read-replica" })

  depends_on = [aws_cloudwatch_log_group.rds]

  lifecycle {
    precondition {
      condition     = contains(local.subnet_zones, var.replica_availability_zone)
      error_message = "replica_availability_zone must be one of the subnet group's zones: ${join(", ", sort(local.subnet_zones))}."
    }
  }
}

# The runbook's cross-region replication of automated backups (us-west-2): point-in-time restore
# stays possible in the backup region if the primary region is lost.
resource "aws_db_instance_automated_backups_replication" "backup_region" {
  provider = aws.backup_region

  source_db_instance_arn = aws_db_instance.primary.arn
  kms_key_id             = aws_kms_key.backup_replica.arn
  retention_period       = var.backup_retention_days

  lifecycle {
    precondition {
      condition     = data.aws_region.backup.name != local.region
      error_message = "The aws.backup_region provider must point at another region than the primary (${local.region})."
    }
  }
}
