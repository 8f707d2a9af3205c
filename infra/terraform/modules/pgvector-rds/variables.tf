variable "identifier" {
  description = "Identifier of the primary RDS instance (the replica is <identifier>-replica-1)."
  type        = string
  default     = "mcp-demo-prod"

  validation {
    # RDS rule: 1-63 letters, digits or hyphens, starting with a letter, no trailing or double hyphen.
    condition     = can(regex("^[a-z][a-z0-9-]{0,50}$", var.identifier)) && !can(regex("--|-$", var.identifier))
    error_message = "identifier must start with a lowercase letter, use lowercase letters, digits and single hyphens, not end with a hyphen, and be at most 51 characters (room for the -replica-1 suffix)."
  }
}

variable "operations_prefix" {
  description = "Identifier prefix of the snapshots and instances the dbops worker creates, restores into and deletes (the runbook's mcp-demo-manual-*, mcp-demo-restored-*, and <identifier>-dr-test-*). The worker's IAM policy is scoped to it."
  type        = string
  default     = "mcp-demo-"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.operations_prefix))
    error_message = "operations_prefix must be 3-41 lowercase letters, digits or hyphens starting with a letter: a short prefix would give the worker power over unrelated instances."
  }
}

variable "engine_version" {
  description = "PostgreSQL engine version. A major version alone (\"15\") lets RDS apply minor upgrades in the maintenance window."
  type        = string
  default     = "15"

  validation {
    condition     = can(regex("^15(\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be PostgreSQL 15 (\"15\" or \"15.N\"): the parameter group family is postgres15."
  }
}

variable "instance_class" {
  description = "Instance class of the primary and of the read replica."
  type        = string
  default     = "db.r5.large"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must look like db.<family>.<size>, e.g. db.r5.large."
  }
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GB."
  type        = number
  default     = 100

  validation {
    condition     = var.allocated_storage_gb >= 20 && var.allocated_storage_gb <= 65536
    error_message = "allocated_storage_gb must be between 20 and 65536."
  }
}

variable "max_allocated_storage_gb" {
  description = "Upper bound of storage autoscaling in GB."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_allocated_storage_gb >= 20 && var.max_allocated_storage_gb <= 65536
    error_message = "max_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "database_name" {
  description = "Name of the application database created on the instance."
  type        = string
  default     = "mcp_db"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase PostgreSQL identifier (letters, digits, underscores; at most 63)."
  }
}

variable "master_username" {
  description = "Master user name. Its password is generated and kept by RDS in Secrets Manager."
  type        = string
  default     = "mcp_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.master_username)) && !contains(["postgres", "admin", "rdsadmin"], var.master_username)
    error_message = "master_username must be a lowercase identifier other than the reserved postgres, admin and rdsadmin."
  }
}

variable "iam_database_user" {
  description = "Database user the dbops worker logs in as with IAM authentication (created with GRANT rds_iam TO <user>). Not the master user."
  type        = string
  default     = "dbops"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.iam_database_user))
    error_message = "iam_database_user must be a lowercase PostgreSQL identifier."
  }
}

variable "port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432

  validation {
    condition     = var.port >= 1150 && var.port <= 65535
    error_message = "port must be between 1150 and 65535 (the range RDS accepts)."
  }
}

variable "vpc_id" {
  description = "VPC of the database security group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the DB subnet group, in at least two availability zones (Multi-AZ needs two)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids must list at least two subnet ids (subnet-...), in different availability zones."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups (the application, the dbops worker) allowed to reach PostgreSQL."
  type        = list(string)

  validation {
    condition     = length(var.allowed_security_group_ids) >= 1 && alltrue([for id in var.allowed_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "allowed_security_group_ids must list at least one security group id (sg-...)."
  }
}

variable "replica_availability_zone" {
  description = "Availability zone of the read replica, e.g. us-east-1b (the runbook's). Must be one of the subnet group's zones."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$", var.replica_availability_zone))
    error_message = "replica_availability_zone must be an availability zone name such as us-east-1b."
  }
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time restore window) on the primary and in the backup region."
  type        = number
  default     = 30

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 7 and 35 (RDS allows at most 35; fewer than 7 is too short a recovery window)."
  }
}

variable "backup_window" {
  description = "Daily automated backup window, UTC (hh24:mi-hh24:mi)."
  type        = string
  default     = "03:00-04:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$", var.backup_window))
    error_message = "backup_window must be hh24:mi-hh24:mi in UTC, e.g. 03:00-04:00."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance window, UTC (ddd:hh24:mi-ddd:hh24:mi); must not overlap the backup window."
  type        = string
  default     = "sun:04:00-sun:05:00"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window))
    error_message = "maintenance_window must be ddd:hh24:mi-ddd:hh24:mi in UTC, e.g. sun:04:00-sun:05:00."
  }
}

variable "performance_insights_retention_days" {
  description = "Performance Insights retention: 7 (free tier) or a multiple of 31 up to 731."
  type        = number
  default     = 7

  validation {
    condition     = var.performance_insights_retention_days == 7 || (var.performance_insights_retention_days % 31 == 0 && var.performance_insights_retention_days <= 731) || var.performance_insights_retention_days == 731
    error_message = "performance_insights_retention_days must be 7, a multiple of 31 up to 713, or 731."
  }
}

variable "monitoring_interval_seconds" {
  description = "Enhanced monitoring interval in seconds."
  type        = number
  default     = 60

  validation {
    condition     = contains([1, 5, 10, 15, 30, 60], var.monitoring_interval_seconds)
    error_message = "monitoring_interval_seconds must be one of 1, 5, 10, 15, 30, 60 (0 would turn enhanced monitoring off)."
  }
}

variable "log_retention_days" {
  description = "Retention of the exported PostgreSQL logs in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention of at least one year: 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "export_bucket_name" {
  description = "Name of the S3 bucket that receives snapshot exports and DR test reports."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.export_bucket_name))
    error_message = "export_bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens."
  }
}

variable "export_archive_after_days" {
  description = "Days after which exports (under exports/) move to S3 Glacier Flexible Retrieval."
  type        = number
  default     = 30

  validation {
    condition     = var.export_archive_after_days >= 1
    error_message = "export_archive_after_days must be at least 1."
  }
}

variable "export_expire_after_days" {
  description = "Days after which exports (under exports/) are deleted (previous versions are deleted 30 days after they stop being current). DR test reports have their own retention."
  type        = number
  default     = 365

  validation {
    condition     = var.export_expire_after_days >= 90
    error_message = "export_expire_after_days must be at least 90 (Glacier Flexible Retrieval bills 90 days at minimum)."
  }
}

variable "access_logs_bucket" {
  description = "Existing bucket that receives the export bucket's server access logs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_logs_bucket))
    error_message = "access_logs_bucket must be a valid S3 bucket name."
  }
}

variable "worker_role_names" {
  description = "IAM roles of the dbops worker that get the worker policy attached (may be empty: attach the policy output yourself)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}

variable "backup_region_network" {
  description = "Network for restores in the backup region after the loss of the primary's region: a VPC there, its private subnets (two availability zones or more) and the security groups allowed to reach PostgreSQL. Null: nothing is created there, and a restore in the backup region needs a subnet group, security group and parameter group made by hand under the names of the backup_region_worker_environment output."
  type = object({
    vpc_id                     = string
    subnet_ids                 = list(string)
    allowed_security_group_ids = list(string)
  })
  default = null

  validation {
    condition = var.backup_region_network == null || (
      can(regex("^vpc-[0-9a-f]+$", var.backup_region_network.vpc_id)) &&
      length(var.backup_region_network.subnet_ids) >= 2 &&
      alltrue([for id in var.backup_region_network.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))]) &&
      alltrue([for id in var.backup_region_network.allowed_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    )
    error_message = "backup_region_network needs a vpc_id (vpc-...), two or more subnet_ids (subnet-...) and security group ids (sg-...) of the backup region."
  }
}

variable "dr_instance_class" {
  description = "Instance class of DR test copies: a copy only has to prove the backup restores, so it is smaller than production's."
  type        = string
  default     = "db.t3.medium"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.dr_instance_class))
    error_message = "dr_instance_class must look like db.<family>.<size>, e.g. db.t3.medium."
  }
}

variable "report_archive_after_days" {
  description = "Days after which DR test reports (under reports/) move to S3 Glacier Flexible Retrieval."
  type        = number
  default     = 90

  validation {
    condition     = var.report_archive_after_days >= 30
    error_message = "report_archive_after_days must be at least 30."
  }
}

variable "report_expire_after_days" {
  description = "Days DR test reports are kept: they are the audit evidence that recovery was tested (seven years by default)."
  type        = number
  default     = 2557

  validation {
    condition     = var.report_expire_after_days >= 365
    error_message = "report_expire_after_days must be at least 365: a report is evidence for the audits of at least a year."
  }
}
