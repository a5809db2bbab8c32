# sentiflow on AWS: storage, streams, catalog, query, jobs, monitoring.
# Table columns come from glue_schema.json, which `sentiflow schema --glue-json` generates from
# jobs/src/schema.rs (a test keeps them equal), so Glue, Athena and the jobs cannot drift.

locals {
  prefix  = "${var.name}-${var.environment}"
  account = data.aws_caller_identity.current.account_id
  schema  = jsondecode(file("${path.module}/glue_schema.json")).tables

  buckets = {
    raw        = "${local.prefix}-raw-${local.account}"
    scored     = "${local.prefix}-scored-${local.account}"
    aggregates = "${local.prefix}-aggregates-${local.account}"
    athena     = "${local.prefix}-athena-results-${local.account}"
    logs       = "${local.prefix}-access-logs-${local.account}"
  }

  # where each table lives: bucket key + the table's directory (jobs write <root>/<dir>/)
  table_bucket = {
    raw_tweets        = "raw"
    scored_tweets     = "scored"
    rejected          = "scored"
    windows           = "aggregates"
    windows_by_source = "aggregates"
    window_terms      = "aggregates"
    alerts            = "aggregates"
  }

  # data roots the jobs take (--out/--input are URLs; see infra/README.md)
  roots = {
    raw        = "s3://${local.buckets.raw}"
    scored     = "s3://${local.buckets.scored}"
    aggregates = "s3://${local.buckets.aggregates}"
  }

  image = "${aws_ecr_repository.sentiflow.repository_url}:${var.image_tag}"
}
