# Least privilege: one task role per job with exactly the buckets/streams it touches; one
# execution role (pull the image, write logs, read the one secret it injects).
#
# Who may assume each role: one trust policy per AWS service, each limited to this account
# (Firehose by the external id it sends, the others by aws:SourceAccount; Batch's service role
# keeps AWS's documented trust policy without a condition).
locals {
  trusted_services = {
    ecs_tasks = { service = "ecs-tasks.amazonaws.com", condition = "aws:SourceAccount" }
    firehose  = { service = "firehose.amazonaws.com", condition = "sts:ExternalId" }
    scheduler = { service = "scheduler.amazonaws.com", condition = "aws:SourceAccount" }
    batch     = { service = "batch.amazonaws.com", condition = null }
  }
}

data "aws_iam_policy_document" "assume" {
  for_each = local.trusted_services
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value.service]
    }
    dynamic "condition" {
      for_each = each.value.condition == null ? [] : [each.value.condition]
      content {
        test     = "StringEquals"
        variable = condition.value
        values   = [local.account]
      }
    }
  }
}

locals {
  jobs = {
    generate  = { s3_read = [], s3_write = ["raw"], kinesis_read = false, kinesis_write = true }
    ingest    = { s3_read = ["raw"], s3_write = ["raw"], kinesis_read = true, kinesis_write = false }
    score     = { s3_read = ["raw", "scored"], s3_write = ["scored"], kinesis_read = false, kinesis_write = false }
    aggregate = { s3_read = ["scored", "aggregates"], s3_write = ["aggregates"], kinesis_read = false, kinesis_write = false }
    stream    = { s3_read = ["raw", "scored", "aggregates"], s3_write = ["raw", "scored", "aggregates"], kinesis_read = true, kinesis_write = false }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.prefix}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs_tasks"].json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.sentiflow.arn]
  }
  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action supports no resource-level permissions
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.job : "${g.arn}:*"]
  }
  statement {
    sid       = "InjectOpenAIKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.openai_api_key.arn]
  }
  statement {
    sid       = "DecryptKeyAndImage"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "job" {
  for_each           = local.jobs
  name               = "${local.prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs_tasks"].json
}

data "aws_iam_policy_document" "job" {
  for_each = local.jobs

  dynamic "statement" {
    for_each = length(each.value.s3_read) > 0 ? [1] : []
    content {
      sid       = "Read"
      actions   = ["s3:GetObject", "s3:ListBucket"]
      resources = flatten([for b in each.value.s3_read : [local.bucket_arn[b], "${local.bucket_arn[b]}/*"]])
    }
  }
  dynamic "statement" {
    for_each = length(each.value.s3_write) > 0 ? [1] : []
    content {
      # jobs replace whole partitions on re-runs: put new files, delete stale ones
      sid       = "Write"
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = [for b in each.value.s3_write : "${local.bucket_arn[b]}/*"]
    }
  }
  dynamic "statement" {
    for_each = each.value.kinesis_read ? [1] : []
    content {
      sid       = "ReadStream"
      actions   = ["kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:DescribeStreamSummary", "kinesis:DescribeStream"]
      resources = [aws_kinesis_stream.tweets.arn]
    }
  }
  dynamic "statement" {
    for_each = each.value.kinesis_write ? [1] : []
    content {
      sid       = "WriteStream"
      actions   = ["kinesis:PutRecords", "kinesis:PutRecord", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
      resources = [aws_kinesis_stream.tweets.arn]
    }
  }
  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "job" {
  for_each = local.jobs
  name     = each.key
  role     = aws_iam_role.job[each.key].id
  policy   = data.aws_iam_policy_document.job[each.key].json
}

# Firehose: read the stream, write the raw/scored buckets, log delivery errors.

resource "aws_iam_role" "firehose" {
  name               = "${local.prefix}-firehose"
  assume_role_policy = data.aws_iam_policy_document.assume["firehose"].json
}

data "aws_iam_policy_document" "firehose" {
  statement {
    actions   = ["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.tweets.arn]
  }
  statement {
    actions   = ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"]
    resources = flatten([for b in ["raw", "scored"] : [local.bucket_arn[b], "${local.bucket_arn[b]}/*"]])
  }
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "firehose"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

# EventBridge Scheduler: run the scheduled task definitions and pass their roles.

resource "aws_iam_role" "scheduler" {
  name               = "${local.prefix}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume["scheduler"].json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    actions   = ["ecs:RunTask"]
    resources = [for k, td in aws_ecs_task_definition.job : "${trimsuffix(td.arn, ":${td.revision}")}:*" if contains(keys(local.scheduled), k)]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.sentiflow.arn]
    }
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    actions   = ["iam:PassRole"]
    resources = concat([aws_iam_role.execution.arn], [for k in keys(local.scheduled) : aws_iam_role.job[k].arn])
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
