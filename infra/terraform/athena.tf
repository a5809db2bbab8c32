resource "aws_athena_workgroup" "sentiflow" {
  name          = local.prefix
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${local.buckets.athena}/results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.data.arn
      }
    }
  }
}

# The queries of sql/athena/ (Trino SQL; tests/athena checks them), saved in the workgroup.
locals {
  athena_queries = {
    for f in fileset("${path.module}/../../sql/athena", "*.sql") :
    trimsuffix(f, ".sql") => file("${path.module}/../../sql/athena/${f}") if f != "ddl.sql"
  }
}

resource "aws_athena_named_query" "q" {
  for_each  = local.athena_queries
  name      = "sentiflow ${each.key}"
  workgroup = aws_athena_workgroup.sentiflow.id
  database  = aws_glue_catalog_database.sentiflow.name
  query     = each.value
}
