# One S3 bucket the way sentiflow keeps data: private, TLS only, owner-enforced, versioned,
# SSE-KMS (SSE-S3 for the access-log bucket, which S3 logging requires), access-logged,
# lifecycle-managed.
variable "name" {
  type = string
}

variable "kms_key_arn" {
  description = "SSE-KMS key; null = SSE-S3 (only for the access-log bucket)."
  type        = string
  default     = null
}

variable "log_bucket" {
  description = "Bucket receiving this bucket's server access logs; null for the log bucket itself."
  type        = string
  default     = null
}

variable "expiration_days" {
  description = "Current objects expire after this many days; 0 = never."
  type        = number
  default     = 0
}

variable "infrequent_access_days" {
  description = "Move current objects to STANDARD_IA after this many days; 0 = never."
  type        = number
  default     = 0
}

variable "account_id" {
  type = string
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication: the data is derived from streams and re-creatable by re-running the jobs; replication doubles cost for no recovery gain. Enable per deployment if required.
  #checkov:skip=CKV2_AWS_62:Event notifications: no consumer reacts to object events; the jobs run on schedules.
  #checkov:skip=CKV_AWS_145:The access-log bucket must use SSE-S3 (S3 server access logging cannot deliver into SSE-KMS buckets); every data bucket passes kms_key_arn and gets SSE-KMS with the project's CMK.
  #checkov:skip=CKV_AWS_18:Access logging is configured by aws_s3_bucket_logging below, except on the log bucket itself (logging a log bucket into itself loops).
  bucket = var.name
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

# versioning protects data from bad overwrites; jobs replace partitions on re-runs, so
# noncurrent versions expire after 30 days (lifecycle below)
resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "this" {
  count         = var.log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.log_bucket
  target_prefix = "${var.name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  dynamic "rule" {
    for_each = var.expiration_days > 0 || var.infrequent_access_days > 0 ? [1] : []
    content {
      id     = "current-objects"
      status = "Enabled"
      filter {}
      abort_incomplete_multipart_upload {
        days_after_initiation = 7
      }
      dynamic "transition" {
        for_each = var.infrequent_access_days > 0 ? [1] : []
        content {
          days          = var.infrequent_access_days
          storage_class = "STANDARD_IA"
        }
      }
      dynamic "expiration" {
        for_each = var.expiration_days > 0 ? [1] : []
        content {
          days = var.expiration_days
        }
      }
    }
  }
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
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
  dynamic "statement" {
    for_each = var.log_bucket == null ? [1] : []
    content {
      sid       = "S3ServerAccessLogs"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this.arn}/*"]
      principals {
        type        = "Service"
        identifiers = ["logging.s3.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [var.account_id]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this.json
}

output "id" {
  value = aws_s3_bucket.this.id
}

output "arn" {
  value = aws_s3_bucket.this.arn
}

output "bucket" {
  value = aws_s3_bucket.this.bucket
}
