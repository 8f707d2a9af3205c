resource "aws_db_subnet_group" "this" {
  name        = "${var.identifier}-subnets"
  description = "Private subnets of ${var.identifier} (two or more availability zones for Multi-AZ)"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

# No egress rule: the database never opens connections of its own, and Terraform removes the
# default allow-all egress rule of a security group it manages.
resource "aws_security_group" "database" {
  name        = "${var.identifier}-postgres"
  description = "PostgreSQL ${var.identifier}: reachable only from the listed security groups"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres" {
  for_each = toset(var.allowed_security_group_ids)

  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = each.value
  tags                         = var.tags
}
