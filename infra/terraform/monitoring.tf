resource "aws_cloudwatch_log_group" "job" {
  for_each          = local.commands
  name              = "/sentiflow/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/sentiflow/${var.environment}/firehose"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_sns_topic" "alarms" {
  name              = "${local.prefix}-alarms"
  kms_master_key_id = aws_kms_key.data.id
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# sentiflow prints `error: <cause chain>` on stderr and exits 2 when a job fails, and logs
# `rejected record` (file, line, reason) for every bad input record it dead-letters.
resource "aws_cloudwatch_log_metric_filter" "job_failures" {
  for_each       = aws_cloudwatch_log_group.job
  name           = "${local.prefix}-${each.key}-failures"
  log_group_name = each.value.name
  pattern        = "\"error: \""
  metric_transformation {
    name          = "JobFailures"
    namespace     = "sentiflow/${var.environment}"
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_log_metric_filter" "rejected" {
  for_each       = { for k, v in aws_cloudwatch_log_group.job : k => v if contains(["score", "ingest", "stream"], k) }
  name           = "${local.prefix}-${each.key}-rejected"
  log_group_name = each.value.name
  pattern        = "\"rejected record\""
  metric_transformation {
    name      = "RejectedRecords"
    namespace = "sentiflow/${var.environment}"
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "job_failures" {
  alarm_name          = "${local.prefix}-job-failures"
  alarm_description   = "A sentiflow job exited with an error (see its log group)."
  namespace           = "sentiflow/${var.environment}"
  metric_name         = "JobFailures"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "rejected" {
  alarm_name          = "${local.prefix}-rejected-records"
  alarm_description   = "Input records are being dead-lettered to _rejected/ (malformed JSON, wrong schema, oversized)."
  namespace           = "sentiflow/${var.environment}"
  metric_name         = "RejectedRecords"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 100
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${local.prefix}-iterator-age"
  alarm_description   = "Consumers of the tweets stream (Firehose, ingest, stream) are falling behind."
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.tweets.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 15 * 60 * 1000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# Batch jobs that fail and ECS tasks that stop with a non-zero exit code also notify directly.
resource "aws_cloudwatch_event_rule" "failed_runs" {
  name        = "${local.prefix}-failed-runs"
  description = "sentiflow Batch jobs FAILED or ECS tasks stopped with a non-zero exit code"
  event_pattern = jsonencode({
    "$or" = [
      { source = ["aws.batch"], "detail-type" = ["Batch Job State Change"], detail = { status = ["FAILED"], jobQueue = [aws_batch_job_queue.sentiflow.arn] } },
      { source = ["aws.ecs"], "detail-type" = ["ECS Task State Change"], detail = { clusterArn = [aws_ecs_cluster.sentiflow.arn], lastStatus = ["STOPPED"], containers = { exitCode = [{ "anything-but" = 0 }] } } },
    ]
  })
}

resource "aws_cloudwatch_event_target" "failed_runs" {
  rule = aws_cloudwatch_event_rule.failed_runs.name
  arn  = aws_sns_topic.alarms.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_cloudwatch_dashboard" "sentiflow" {
  dashboard_name = local.prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "Job failures and rejected records"
          region  = var.region
          stat    = "Sum"
          period  = 3600
          metrics = [["sentiflow/${var.environment}", "JobFailures"], ["sentiflow/${var.environment}", "RejectedRecords"]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Tweets stream"
          region = var.region
          period = 300
          metrics = [
            ["AWS/Kinesis", "IncomingRecords", "StreamName", aws_kinesis_stream.tweets.name, { stat = "Sum" }],
            ["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", aws_kinesis_stream.tweets.name, { stat = "Maximum", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Firehose deliveries to S3"
          region  = var.region
          stat    = "Sum"
          period  = 300
          metrics = [for s in ["raw", "scored"] : ["AWS/Firehose", "DeliveryToS3.Records", "DeliveryStreamName", "${local.prefix}-${s}"]]
        }
      },
      {
        type = "log", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Latest job errors"
          region = var.region
          query  = "SOURCE '${aws_cloudwatch_log_group.job["score"].name}' | SOURCE '${aws_cloudwatch_log_group.job["aggregate"].name}' | fields @timestamp, @logStream, @message | filter @message like /error: / | sort @timestamp desc | limit 20"
        }
      },
    ]
  })
}
