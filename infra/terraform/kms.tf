# One customer-managed key for data at rest: buckets, stream, Firehose, logs, secrets, ECR, SNS.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only (key policies attach to one key).
  #checkov:skip=CKV_AWS_111:The account root statement is the standard key-admin delegation; IAM policies then scope who may use the key.
  #checkov:skip=CKV_AWS_109:Same: the account root statement delegates key administration to IAM, as AWS's default key policy does.
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${local.account}:log-group:/sentiflow/*"]
    }
  }
}

resource "aws_kms_key" "data" {
  description         = "${local.prefix} data at rest"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
