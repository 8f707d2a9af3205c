# The dbops worker's policy: exactly the RDS and S3 actions its aws provider calls, and the
# permissions AWS checks alongside them. test/infra/iam-policy.test.ts derives that list from the
# provider's code and fails when the two drift apart.

locals {
  # Instances the worker snapshots, restores into, modifies (a real recovery's monitoring) and
  # deletes, in the primary's region and in the backup region (a restore after the loss of the
  # primary's); the production instance is among the first two and is protected below.
  worker_instance_arns = [
    aws_db_instance.primary.arn,
    aws_db_instance.replica.arn,
    "${local.rds_arn_prefix}:db:${var.operations_prefix}*",
    "${local.backup_rds_arn_prefix}:db:${var.operations_prefix}*",
  ]
  # What a point-in-time restore reads when its source instance is gone: the automated backups RDS
  # retained here, or those replicated to the backup region.
  worker_automated_backup_arns = [
    "${local.rds_arn_prefix}:auto-backup:*",
    "${local.backup_rds_arn_prefix}:auto-backup:*",
  ]
  # Real recoveries (pitrRestore, snapshotRestore) are named <identifier>-pitr-<time> and
  # <identifier>-restore-<time> unless given a name: meant to replace production, they are never
  # the worker's to delete.
  recovery_instance_arns = [
    "${local.rds_arn_prefix}:db:${var.identifier}-pitr-*",
    "${local.rds_arn_prefix}:db:${var.identifier}-restore-*",
    "${local.backup_rds_arn_prefix}:db:${var.identifier}-pitr-*",
    "${local.backup_rds_arn_prefix}:db:${var.identifier}-restore-*",
  ]
  # The keys RDS encrypts with for the worker: storage and exports here, the replicated backups
  # (and what is restored from them) in the backup region.
  worker_kms_key_arns = [aws_kms_key.rds.arn, aws_kms_key.backup_replica.arn]
  rds_via_service     = ["rds.${local.region}.amazonaws.com", "rds.${local.backup_region}.amazonaws.com"]
  # Manual snapshots the worker takes, and the automated ones RDS names rds:<instance>-<date>.
  worker_snapshot_arns = [
    "${local.rds_arn_prefix}:snapshot:${var.operations_prefix}*",
    "${local.rds_arn_prefix}:snapshot:rds:${var.identifier}-*",
  ]
  # A restore or create names the subnet group, parameter group and (implicitly) the default option
  # group; RDS authorizes the request against each of them.
  worker_restore_dependency_arns = [
    "${local.rds_arn_prefix}:subgrp:${aws_db_subnet_group.this.name}",
    "${local.rds_arn_prefix}:pg:${aws_db_parameter_group.postgres15.name}",
    "${local.rds_arn_prefix}:og:default:postgres-15",
    "${local.backup_rds_arn_prefix}:subgrp:${local.backup_region_names.subnet_group}",
    "${local.backup_rds_arn_prefix}:pg:${local.backup_region_names.parameter_group}",
    "${local.backup_rds_arn_prefix}:og:default:postgres-15",
  ]
}

data "aws_iam_policy_document" "worker" {
  # Listing and polling. Listing all instances is authorized against db:* itself, so these
  # read-only actions cannot be narrowed to a name prefix; they stay within the account and region.
  statement {
    sid = "DescribeInstancesSnapshotsAndBackups"
    actions = [
      "rds:DescribeDBInstanceAutomatedBackups",
      "rds:DescribeDBInstances",
      "rds:DescribeDBSnapshots",
    ]
    resources = [
      "${local.rds_arn_prefix}:db:*",
      "${local.rds_arn_prefix}:snapshot:*",
      "${local.rds_arn_prefix}:auto-backup:*",
      "${local.backup_rds_arn_prefix}:db:*",
      "${local.backup_rds_arn_prefix}:auto-backup:*",
    ]
  }

  # Snapshots, restores, instance creation, a real recovery's monitoring (ModifyDBInstance) and
  # the deletion of DR test copies. Creating a resource with tags is also authorized as
  # rds:AddTagsToResource on it.
  statement {
    sid = "SnapshotRestoreAndRemoveOwnInstances"
    actions = [
      "rds:AddTagsToResource",
      "rds:CreateDBInstance",
      "rds:CreateDBSnapshot",
      "rds:DeleteDBInstance",
      "rds:ModifyDBInstance",
      "rds:RestoreDBInstanceFromDBSnapshot",
      "rds:RestoreDBInstanceToPointInTime",
    ]
    resources = concat(
      local.worker_instance_arns,
      local.worker_snapshot_arns,
      local.worker_automated_backup_arns,
      local.worker_restore_dependency_arns,
    )
  }

  # Deleting a snapshot: only a manual one of the operations prefix that a dbops run took (it
  # carries the run's owner tags); never an automated one, never one made by hand.
  statement {
    sid       = "DeleteOwnSnapshots"
    actions   = ["rds:DeleteDBSnapshot"]
    resources = ["${local.rds_arn_prefix}:snapshot:${var.operations_prefix}*"]
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/dbops:workflow-id"
      values   = ["false"]
    }
  }

  # An instance created with ManageMasterUserPassword gets its master secret created (and tagged)
  # by RDS as the caller; RDS names these secrets rds!db-<uuid>.
  statement {
    sid       = "CreateManagedMasterSecret"
    actions   = ["secretsmanager:CreateSecret", "secretsmanager:TagResource"]
    resources = ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:rds!db-*"]
  }

  # Exports of the worker's own and of the automated snapshots.
  statement {
    sid       = "ExportSnapshots"
    actions   = ["rds:StartExportTask"]
    resources = local.worker_snapshot_arns
  }

  # Looking an export task up by its id names no snapshot, so the request is authorized against
  # "*"; the action only reads, and the condition keeps it in the database's region.
  statement {
    sid       = "DescribeExportTasks"
    actions   = ["rds:DescribeExportTasks"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  # StartExportTask hands the export role to RDS, and a real recovery's ModifyDBInstance the
  # enhanced monitoring role ...
  statement {
    sid       = "PassExportAndMonitoringRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.export.arn, aws_iam_role.monitoring.arn]
  }

  # ... and RDS makes grants, as the worker, on the keys it encrypts with: the export's key, the
  # key of an encrypted snapshot or backup it restores, Performance Insights' key.
  statement {
    sid       = "GrantKeysToRds"
    actions   = ["kms:CreateGrant"]
    resources = local.worker_kms_key_arns
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.rds_via_service
    }
  }

  # RDS first reads those keys as the worker. kms:GrantIsForAWSResource exists only on the grant
  # actions (CreateGrant, ListGrants, RevokeGrant), so DescribeKey is held to RDS by kms:ViaService.
  statement {
    sid       = "DescribeKeysThroughRds"
    actions   = ["kms:DescribeKey"]
    resources = local.worker_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.rds_via_service
    }
  }

  # Listing what an export wrote.
  statement {
    sid       = "ListExports"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.exports.arn]
  }

  # DR test reports (JSON and Markdown) under reports/ in the export bucket, nowhere else; the
  # earlier reports are read back for the report's trend and forecast.
  statement {
    sid       = "WriteDrReports"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.exports.arn}/reports/*"]
  }

  # The bucket encrypts with the KMS key by default: writing an object needs a data key and reading
  # one needs the key to decrypt, both only through S3.
  statement {
    sid       = "EncryptDrReports"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.rds.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  # IAM database authentication as the worker's database user. A DR test restores into a new
  # instance whose resource id is unknown in advance, so the user, not the instance, is the scope.
  statement {
    sid       = "ConnectAsWorkerDatabaseUser"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:*/${var.iam_database_user}"]
  }

  # The production primary and its replica share the operations prefix; whatever else is allowed
  # above, the worker never deletes or modifies them (deletion protection is the second guard).
  statement {
    sid       = "NeverDeleteOrModifyProduction"
    effect    = "Deny"
    actions   = ["rds:DeleteDBInstance", "rds:ModifyDBInstance"]
    resources = [aws_db_instance.primary.arn, aws_db_instance.replica.arn]
  }

  # Nor a real recovery: by its name, or, named otherwise, by the purpose tag its restore gave it.
  statement {
    sid       = "NeverDeleteRecoveriesByName"
    effect    = "Deny"
    actions   = ["rds:DeleteDBInstance"]
    resources = local.recovery_instance_arns
  }

  statement {
    sid       = "NeverDeleteRecoveriesByTag"
    effect    = "Deny"
    actions   = ["rds:DeleteDBInstance"]
    resources = ["${local.rds_arn_prefix}:db:*", "${local.backup_rds_arn_prefix}:db:*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/dbops:purpose"
      values   = ["restore"]
    }
  }
}

resource "aws_iam_policy" "worker" {
  name        = "${var.identifier}-dbops-worker"
  description = "dbops worker: snapshots, restores, exports and IAM database login for ${var.identifier}"
  policy      = data.aws_iam_policy_document.worker.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "worker" {
  for_each = toset(var.worker_role_names)

  role       = each.value
  policy_arn = aws_iam_policy.worker.arn
}
