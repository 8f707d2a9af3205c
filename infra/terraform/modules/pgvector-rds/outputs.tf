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
  value = {
    DBOPS_PROVIDER               = "aws"
    AWS_REGION                   = local.region
    DBOPS_INSTANCE_ID            = aws_db_instance.primary.identifier
    PGHOST                       = aws_db_instance.primary.address
    PGPORT                       = tostring(aws_db_instance.primary.port)
    PGDATABASE                   = var.database_name
    PGUSER                       = var.iam_database_user
    DBOPS_DB_AUTH                = "iam"
    DBOPS_DB_REPLICA_HOST        = aws_db_instance.replica.address
    DBOPS_RDS_SUBNET_GROUP       = aws_db_subnet_group.this.name
    DBOPS_RDS_SECURITY_GROUP_IDS = aws_security_group.database.id
    DBOPS_RDS_PARAMETER_GROUP    = aws_db_parameter_group.postgres15.name
    DBOPS_RDS_INSTANCE_CLASS     = var.instance_class
    DBOPS_EXPORT_BUCKET          = aws_s3_bucket.exports.bucket
    DBOPS_EXPORT_IAM_ROLE_ARN    = aws_iam_role.export.arn
    DBOPS_EXPORT_KMS_KEY_ID      = aws_kms_key.rds.arn
  }
}
