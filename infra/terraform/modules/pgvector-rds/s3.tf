# Bucket for snapshot exports (RDS export tasks write Parquet here) and DR test reports.
resource "aws_s3_bucket" "exports" {
  #checkov:skip=CKV_AWS_144:Exports are derived from snapshots whose automated backups are already replicated to the backup region; an export can be made again there, so a second copy of every export is not kept.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: the worker follows an export through DescribeExportTasks.
  bucket = var.export_bucket_name
  tags   = var.tags
}

resource "aws_s3_bucket_ownership_controls" "exports" {
  bucket = aws_s3_bucket.exports.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "exports" {
  bucket                  = aws_s3_bucket.exports.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "exports" {
  bucket = aws_s3_bucket.exports.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.rds.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "exports" {
  bucket        = aws_s3_bucket.exports.id
  target_bucket = var.access_logs_bucket
  target_prefix = "s3/${var.export_bucket_name}/"
}

# Exports (under exports/, where backups export by default) are bulky copies that can be made again
# from a snapshot: archived, then deleted. DR test reports (under reports/) are small and are audit
# evidence that the recovery was tested: kept apart, for years. Objects elsewhere (an export given
# another prefix) have no rule and are kept until deleted by hand.
resource "aws_s3_bucket_lifecycle_configuration" "exports" {
  bucket = aws_s3_bucket.exports.id

  rule {
    id     = "archive-then-expire-exports"
    status = "Enabled"
    filter {
      prefix = "exports/"
    }

    transition {
      days          = var.export_archive_after_days
      storage_class = "GLACIER"
    }
    expiration {
      days = var.export_expire_after_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  rule {
    id     = "keep-dr-reports-as-audit-evidence"
    status = "Enabled"
    filter {
      prefix = "reports/"
    }

    transition {
      days          = var.report_archive_after_days
      storage_class = "GLACIER"
    }
    expiration {
      days = var.report_expire_after_days
    }
    # A report is written once; a version replaced by mistake is kept as long as the report.
    noncurrent_version_expiration {
      noncurrent_days = var.report_expire_after_days
    }
  }

  # An upload that never completed (a failed export task) anywhere in the bucket.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.exports]

  lifecycle {
    precondition {
      condition     = var.export_expire_after_days > var.export_archive_after_days
      error_message = "export_expire_after_days must be greater than export_archive_after_days."
    }
    precondition {
      condition     = var.report_expire_after_days > var.report_archive_after_days + 90
      error_message = "report_expire_after_days must exceed report_archive_after_days by more than 90 days (Glacier Flexible Retrieval bills 90 days at minimum)."
    }
  }
}

# Refuse plain-HTTP requests to the bucket.
data "aws_iam_policy_document" "exports_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.exports.arn, "${aws_s3_bucket.exports.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "exports" {
  bucket = aws_s3_bucket.exports.id
  policy = data.aws_iam_policy_document.exports_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.exports]
}

# The role the RDS export task assumes to write the exported snapshot into the bucket.
data "aws_iam_policy_document" "export_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["export.rds.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "export" {
  name               = "${var.identifier}-rds-export"
  description        = "Assumed by RDS export tasks of ${var.identifier} to write into ${var.export_bucket_name}"
  assume_role_policy = data.aws_iam_policy_document.export_assume.json
  tags               = var.tags
}

# The actions the export task needs on the bucket (the RDS StartExportTask documentation's list).
data "aws_iam_policy_document" "export" {
  statement {
    sid       = "ListExportBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.exports.arn]
  }
  statement {
    sid       = "WriteExportObjects"
    actions   = ["s3:PutObject*", "s3:GetObject*", "s3:DeleteObject*"]
    resources = ["${aws_s3_bucket.exports.arn}/*"]
  }
  # The bucket encrypts every object it receives with the key by default.
  statement {
    sid       = "EncryptExportObjects"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.rds.arn]
  }
}

resource "aws_iam_role_policy" "export" {
  name   = "write-exports"
  role   = aws_iam_role.export.id
  policy = data.aws_iam_policy_document.export.json
}
