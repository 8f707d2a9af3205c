# One customer-managed key encrypts the instance storage, Performance Insights, the master user
# secret, the exported logs and the export bucket; a second one in the backup region encrypts the
# replicated backups (a KMS key cannot be used outside its region).

resource "aws_kms_key" "rds" {
  description             = "${var.identifier}: RDS storage, Performance Insights, master secret, logs and exports"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = jsonencode(local.key_policy)
  tags                    = var.tags
}

resource "aws_kms_alias" "rds" {
  name          = "alias/${var.identifier}-rds"
  target_key_id = aws_kms_key.rds.key_id
}

resource "aws_kms_key" "backup_replica" {
  provider = aws.backup_region

  description             = "${var.identifier}: automated backups replicated from ${local.region}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = jsonencode(local.backup_key_policy)
  tags                    = var.tags
}

resource "aws_kms_alias" "backup_replica" {
  provider = aws.backup_region

  name          = "alias/${var.identifier}-rds-backups"
  target_key_id = aws_kms_key.backup_replica.key_id
}

locals {
  # The account administers the key through IAM; AWS services (RDS, Secrets Manager, S3, the
  # export task) use it through grants made on behalf of an IAM principal of the account.
  account_root_statement = {
    Sid       = "AccountAdministersKeyThroughIam"
    Effect    = "Allow"
    Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
    Action    = "kms:*"
    Resource  = "*"
  }

  key_policy = {
    Version = "2012-10-17"
    Statement = [
      local.account_root_statement,
      {
        # CloudWatch Logs is not an IAM principal of the account: it needs its own statement,
        # limited to this instance's and its replica's log groups.
        Sid       = "CloudWatchLogsEncryptsRdsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${var.identifier}*"
          }
        }
      },
    ]
  }

  backup_key_policy = {
    Version   = "2012-10-17"
    Statement = [local.account_root_statement]
  }
}
