variable "region" {
  description = "Region of the database."
  type        = string
  default     = "us-east-1"
}

variable "backup_region" {
  description = "Region that receives the replicated automated backups."
  type        = string
  default     = "us-west-2"

  validation {
    condition     = var.backup_region != var.region
    error_message = "backup_region must differ from region: a copy in the same region does not survive the loss of that region."
  }
}

variable "instance_class" {
  description = "Instance class of the primary and of the read replica."
  type        = string
  default     = "db.r5.large"
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in at least two availability zones."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups of the application and of the dbops worker."
  type        = list(string)
}

variable "replica_availability_zone" {
  description = "Availability zone of the read replica."
  type        = string
  default     = "us-east-1b"
}

variable "export_bucket_name" {
  description = "Bucket for snapshot exports and DR test reports."
  type        = string
  default     = "mcp-demo-backups"
}

variable "access_logs_bucket" {
  description = "Existing bucket for S3 server access logs."
  type        = string
}

variable "worker_role_names" {
  description = "IAM roles of the dbops worker to attach the worker policy to."
  type        = list(string)
  default     = []
}

variable "backup_region_network" {
  description = "VPC, private subnets and allowed security groups in the backup region, for restores there after the loss of the primary region (null: none is created)."
  type = object({
    vpc_id                     = string
    subnet_ids                 = list(string)
    allowed_security_group_ids = list(string)
  })
  default = null
}
