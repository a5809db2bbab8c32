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

# sentiflow prints `error: <cause chain>` on stderr and exits 2 when a job fails: a failed run
# prints no summary (so no EMF line), so failures stay a log filter.
resource "aws_cloudwatch_log_metric_filter" "job_failures" {
  for_each       = aws_cloudwatch_log_group.job
  name           = "${local.prefix}-${each.key}-failures"
  log_group_name = each.value.name
  pattern        = "\"error: \""
  metric_transformation {
    name          = "JobFailures"
    namespace     = local.metrics_namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "job_failures" {
  alarm_name          = "${local.prefix}-job-failures"
  alarm_description   = "A sentiflow job exited with an error (see its log group)."
  namespace           = local.metrics_namespace
  metric_name         = "JobFailures"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# The jobs' own metrics (`--metrics emf`: CloudWatch Embedded Metric Format lines in their log
# groups, dimension `job`): score, ingest and stream print RecordsRead and RowsRejected; the stream
# prints its watermark delay and largest shard lag every minute (README "Metrics").
resource "aws_cloudwatch_metric_alarm" "dead_letter_rate" {
  for_each            = toset(["score", "ingest", "stream"])
  alarm_name          = "${local.prefix}-${each.key}-dead-letter-rate"
  alarm_description   = "More than ${var.dead_letter_alarm_percent} % of the records ${each.key} read went to _rejected/ (malformed JSON, wrong schema, oversized)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dead_letter_alarm_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  metric_query {
    id          = "rate"
    expression  = "100 * rejected / MAX([read, 1])"
    label       = "rejected %"
    return_data = true
  }
  metric_query {
    id = "rejected"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "RowsRejected"
      dimensions  = { job = each.key }
      stat        = "Sum"
      period      = 3600
    }
  }
  metric_query {
    id = "read"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "RecordsRead"
      dimensions  = { job = each.key }
      stat        = "Sum"
      period      = 3600
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "stream_watermark_delay" {
  alarm_name          = "${local.prefix}-stream-watermark-delay"
  alarm_description   = "The stream service's watermark (windows emitted through) is more than ${var.watermark_delay_alarm_minutes} minutes behind the wall clock: windows and alerts are late."
  namespace           = local.metrics_namespace
  metric_name         = "WatermarkDelaySeconds"
  dimensions          = { job = "stream" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.watermark_delay_alarm_minutes * 60
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "stream_shard_lag" {
  alarm_name          = "${local.prefix}-stream-shard-lag"
  alarm_description   = "A shard the stream service reads is more than ${var.shard_lag_alarm_minutes} minutes behind its tip (MillisBehindLatest)."
  namespace           = local.metrics_namespace
  metric_name         = "MaxShardMillisBehind"
  dimensions          = { job = "stream" }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.shard_lag_alarm_minutes * 60 * 1000
  comparison_operator = "GreaterThanThreshold"
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
          title   = "Job failures and rejected records (per job)"
          region  = var.region
          stat    = "Sum"
          period  = 3600
          metrics = concat([[local.metrics_namespace, "JobFailures"]], [for j in ["score", "ingest", "stream"] : [local.metrics_namespace, "RowsRejected", "job", j]])
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title  = "Stream service: watermark delay (s) and largest shard lag (ms)"
          region = var.region
          stat   = "Maximum"
          period = 300
          metrics = [
            [local.metrics_namespace, "WatermarkDelaySeconds", "job", "stream"],
            [local.metrics_namespace, "MaxShardMillisBehind", "job", "stream", { yAxis = "right" }],
          ]
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
