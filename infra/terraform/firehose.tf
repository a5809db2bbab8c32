# raw: the Kinesis stream delivered as gzip NDJSON into the raw bucket, Hive-style prefixes, so
#      `sentiflow score --input s3://<raw>/firehose/tweets/` reads it (score understands Firehose output);
# scored: a Direct PUT stream for producers that push scored records (NDJSON) themselves.
resource "aws_kinesis_firehose_delivery_stream" "raw" {
  name        = "${local.prefix}-raw"
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = aws_kinesis_stream.tweets.arn
    role_arn           = aws_iam_role.firehose.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = local.bucket_arn["raw"]
    prefix              = "firehose/tweets/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    error_output_prefix = "firehose/errors/tweets/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    buffering_size      = 64
    buffering_interval  = 300
    compression_format  = "GZIP"
    kms_key_arn         = aws_kms_key.data.arn

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = "raw"
    }
  }
}

resource "aws_kinesis_firehose_delivery_stream" "scored" {
  name        = "${local.prefix}-scored"
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.data.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = local.bucket_arn["scored"]
    prefix              = "firehose/scored/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    error_output_prefix = "firehose/errors/scored/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    buffering_size      = 64
    buffering_interval  = 300
    compression_format  = "GZIP"
    kms_key_arn         = aws_kms_key.data.arn

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = "scored"
    }
  }
}
