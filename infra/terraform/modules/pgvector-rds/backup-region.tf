# A restore in the backup region, after the loss of the primary's region, reads the replicated
# automated backups (rds.tf) and needs a network there: RDS takes no subnet group, security group
# or parameter group from the source of a restore. Created when backup_region_network is given;
# the worker policy and the backup_region_worker_environment output name them either way.

locals {
  backup_region_names = {
    subnet_group    = "${var.identifier}-subnets"
    security_group  = "${var.identifier}-postgres"
    parameter_group = "${var.identifier}-postgres15"
  }
  backup_region_allowed_groups = var.backup_region_network == null ? [] : var.backup_region_network.allowed_security_group_ids
}

resource "aws_db_subnet_group" "backup_region" {
  count    = var.backup_region_network == null ? 0 : 1
  provider = aws.backup_region

  name        = local.backup_region_names.subnet_group
  description = "Private subnets for restores of ${var.identifier} in ${local.backup_region}"
  subnet_ids  = var.backup_region_network.subnet_ids
  tags        = var.tags
}

# No egress rule, as for the primary's security group.
resource "aws_security_group" "backup_region" {
  #checkov:skip=CKV2_AWS_5:Attached by the worker's restores in the backup region (DBOPS_RDS_SECURITY_GROUP_IDS of the backup_region_worker_environment output), not by Terraform.
  count    = var.backup_region_network == null ? 0 : 1
  provider = aws.backup_region

  name        = local.backup_region_names.security_group
  description = "PostgreSQL restores of ${var.identifier} in ${local.backup_region}: reachable only from the listed security groups"
  vpc_id      = var.backup_region_network.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "backup_region" {
  for_each = toset(local.backup_region_allowed_groups)
  provider = aws.backup_region

  security_group_id            = aws_security_group.backup_region[0].id
  description                  = "PostgreSQL from ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = each.value
  tags                         = var.tags
}

# The primary's parameters, so a restored instance behaves as production does.
resource "aws_db_parameter_group" "backup_region" {
  count    = var.backup_region_network == null ? 0 : 1
  provider = aws.backup_region

  name        = local.backup_region_names.parameter_group
  family      = "postgres15"
  description = "${var.identifier} restored in ${local.backup_region}: the primary's parameters"
  tags        = var.tags

  dynamic "parameter" {
    for_each = aws_db_parameter_group.postgres15.parameter
    content {
      name         = parameter.value.name
      value        = parameter.value.value
      apply_method = parameter.value.apply_method
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}
