output "endpoint" {
  description = "Host name of the primary."
  value       = module.database.endpoint
}

output "replica_endpoint" {
  description = "Host name of the read replica."
  value       = module.database.replica_endpoint
}

output "resource_id" {
  description = "DbiResourceId of the primary."
  value       = module.database.resource_id
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret of the RDS-managed master password."
  value       = module.database.master_user_secret_arn
}

output "export_bucket" {
  description = "S3 bucket of snapshot exports."
  value       = module.database.export_bucket
}

output "export_role_arn" {
  description = "Role of the RDS export task."
  value       = module.database.export_role_arn
}

output "monitoring_role_arn" {
  description = "Role of enhanced monitoring."
  value       = module.database.monitoring_role_arn
}

output "worker_policy_arn" {
  description = "The dbops worker's policy."
  value       = module.database.worker_policy_arn
}

output "worker_environment" {
  description = "Environment for a dbops worker with the aws provider."
  value       = module.database.worker_environment
}

output "backup_region_worker_environment" {
  description = "Environment for a dbops worker restoring in the backup region."
  value       = module.database.backup_region_worker_environment
}
