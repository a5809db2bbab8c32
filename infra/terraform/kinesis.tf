resource "aws_kinesis_stream" "tweets" {
  name             = "${local.prefix}-tweets"
  shard_count      = var.kinesis_shard_count > 0 ? var.kinesis_shard_count : null
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.data.arn

  stream_mode_details {
    stream_mode = var.kinesis_shard_count > 0 ? "PROVISIONED" : "ON_DEMAND"
  }

  shard_level_metrics = ["IncomingRecords", "OutgoingRecords", "IteratorAgeMilliseconds", "WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded"]
}
