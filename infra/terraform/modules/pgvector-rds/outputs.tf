output "endpoint" {
  description = "Host name of the primary (writer)."
  value       = aws_db_instance.primary.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.primary.port
}

output "replica_endpoint" {
  description = "Host name of the read replica (read-only queries)."
  value       = aws_db_instance.replica.address
}

output "resource_id" {
  description = "DbiResourceId of the primary, as used in rds-db:connect ARNs."
  value       = aws_db_instance.primary.resource_id
}

output "instance_arn" {
  description = "ARN of the primary."
  value       = aws_db_instance.primary.arn
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the RDS-managed master password."
  value       = aws_db_instance.primary.master_user_secret[0].secret_arn
}

output "kms_key_arn" {
  description = "KMS key of the instance, Performance Insights, the master secret, logs and exports."
  value       = aws_kms_key.rds.arn
}

output "export_bucket" {
  description = "S3 bucket receiving snapshot exports."
  value       = aws_s3_bucket.exports.bucket
}

output "export_role_arn" {
  description = "Role the RDS export task assumes to write into the export bucket."
  value       = aws_iam_role.export.arn
}

output "monitoring_role_arn" {
  description = "Role RDS enhanced monitoring assumes."
  value       = aws_iam_role.monitoring.arn
}

output "worker_policy_arn" {
  description = "Least-privilege policy of the dbops worker; attach it to the worker's role."
  value       = aws_iam_policy.worker.arn
}

output "security_group_id" {
  description = "Security group of the database (restored instances get it too)."
  value       = aws_security_group.database.id
}

output "worker_environment" {
  description = "Environment of a dbops worker using the aws provider against this database."
  value = merge(local.worker_rds_environment, {
    AWS_REGION                   = local.region
    DBOPS_RDS_SUBNET_GROUP       = aws_db_subnet_group.this.name
    DBOPS_RDS_SECURITY_GROUP_IDS = aws_security_group.database.id
    DBOPS_RDS_PARAMETER_GROUP    = aws_db_parameter_group.postgres15.name
    # Performance Insights of a real recovery, with the key of its region.
    DBOPS_RDS_PERFORMANCE_INSIGHTS_KMS_KEY_ID = aws_kms_key.rds.arn
    DBOPS_EXPORT_BUCKET                       = aws_s3_bucket.exports.bucket
    DBOPS_EXPORT_IAM_ROLE_ARN                 = aws_iam_role.export.arn
    DBOPS_EXPORT_KMS_KEY_ID                   = aws_kms_key.rds.arn
  })
}

output "backup_region_worker_environment" {
  description = "Environment of a dbops worker in the backup region: dbops dr-test --region <backup region> runs there, and after the loss of the primary's region dbops restore --to latest restores the replicated automated backups there. Exports stay with the primary's region."
  value = merge(local.worker_rds_environment, {
    # dbops dr-test --region <backup region> runs on this queue (the default queue, dbops, and the region).
    DBOPS_TASK_QUEUE                          = "dbops-${local.backup_region}"
    AWS_REGION                                = local.backup_region
    DBOPS_RDS_SUBNET_GROUP                    = local.backup_region_names.subnet_group
    DBOPS_RDS_SECURITY_GROUP_IDS              = join(",", aws_security_group.backup_region[*].id)
    DBOPS_RDS_PARAMETER_GROUP                 = local.backup_region_names.parameter_group
    DBOPS_RDS_PERFORMANCE_INSIGHTS_KMS_KEY_ID = aws_kms_key.backup_replica.arn
  })
}

locals {
  # What a worker needs in either region: the database, and what the instances it creates get.
  worker_rds_environment = {
    DBOPS_PROVIDER           = "aws"
    DBOPS_INSTANCE_ID        = aws_db_instance.primary.identifier
    PGHOST                   = aws_db_instance.primary.address
    PGPORT                   = tostring(aws_db_instance.primary.port)
    PGDATABASE               = var.database_name
    PGUSER                   = var.iam_database_user
    DBOPS_DB_AUTH            = "iam"
    DBOPS_DB_REPLICA_HOST    = aws_db_instance.replica.address
    DBOPS_RDS_INSTANCE_CLASS = var.instance_class
    # DR test copies are small; real recoveries get production's settings below.
    DBOPS_RDS_DR_INSTANCE_CLASS                   = var.dr_instance_class
    DBOPS_RDS_BACKUP_RETENTION_DAYS               = tostring(var.backup_retention_days)
    DBOPS_RDS_MONITORING_INTERVAL                 = tostring(var.monitoring_interval_seconds)
    DBOPS_RDS_MONITORING_ROLE_ARN                 = aws_iam_role.monitoring.arn
    DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS = tostring(var.performance_insights_retention_days)
    DBOPS_RDS_LOG_EXPORTS                         = join(",", local.log_exports)
    DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB            = tostring(var.max_allocated_storage_gb)
    DBOPS_RDS_CA_CERTIFICATE                      = local.ca_cert_identifier
  }
}
