data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_region" "backup" {
  provider = aws.backup_region
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  # The prefix every RDS ARN of this account and region starts with, and of the backup region.
  backup_region         = data.aws_region.backup.name
  rds_arn_prefix        = "arn:${local.partition}:rds:${local.region}:${local.account_id}"
  backup_rds_arn_prefix = "arn:${local.partition}:rds:${local.backup_region}:${local.account_id}"
  replica_identifier = "${var.identifier}-replica-1"
  # Log groups RDS writes the exported logs to; created here so that they are encrypted and expire.
  log_groups = {
    for pair in setproduct([var.identifier, local.replica_identifier], ["postgresql", "upgrade"]) :
    "${pair[0]}/${pair[1]}" => "/aws/rds/instance/${pair[0]}/${pair[1]}"
  }
}
