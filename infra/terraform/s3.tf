# Buckets: raw (generated/ingested tweets, Firehose deliveries), scored, aggregates (windows,
# windows_by_source, alerts), Athena query results, and the access-log bucket they log to.
module "bucket_logs" {
  source          = "./modules/bucket"
  name            = local.buckets.logs
  account_id      = local.account
  expiration_days = 365
}

module "bucket_raw" {
  source                 = "./modules/bucket"
  name                   = local.buckets.raw
  account_id             = local.account
  kms_key_arn            = aws_kms_key.data.arn
  log_bucket             = module.bucket_logs.id
  infrequent_access_days = 30
  expiration_days        = var.raw_expiration_days
}

module "bucket_scored" {
  source      = "./modules/bucket"
  name        = local.buckets.scored
  account_id  = local.account
  kms_key_arn = aws_kms_key.data.arn
  log_bucket  = module.bucket_logs.id
}

module "bucket_aggregates" {
  source      = "./modules/bucket"
  name        = local.buckets.aggregates
  account_id  = local.account
  kms_key_arn = aws_kms_key.data.arn
  log_bucket  = module.bucket_logs.id
}

module "bucket_athena" {
  source          = "./modules/bucket"
  name            = local.buckets.athena
  account_id      = local.account
  kms_key_arn     = aws_kms_key.data.arn
  log_bucket      = module.bucket_logs.id
  expiration_days = 30
}

locals {
  bucket_arn = {
    raw        = module.bucket_raw.arn
    scored     = module.bucket_scored.arn
    aggregates = module.bucket_aggregates.arn
    athena     = module.bucket_athena.arn
  }
}
