# Glue tables for every sentiflow table, columns from glue_schema.json (the schema module),
# Parquet SerDe, partition projection (no crawler, no MSCK REPAIR TABLE).
resource "aws_glue_catalog_database" "sentiflow" {
  name        = replace("${local.prefix}", "-", "_")
  description = "sentiflow tables (${var.environment})"
}

resource "aws_glue_data_catalog_encryption_settings" "this" {
  data_catalog_encryption_settings {
    connection_password_encryption {
      return_connection_password_encrypted = true
      aws_kms_key_id                       = aws_kms_key.data.arn
    }
    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = aws_kms_key.data.arn
    }
  }
}

resource "aws_glue_catalog_table" "t" {
  for_each      = local.schema
  database_name = aws_glue_catalog_database.sentiflow.name
  name          = each.key
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(
    {
      "classification"            = "parquet"
      "EXTERNAL"                  = "TRUE"
      "parquet.compression"       = "ZSTD"
      "projection.enabled"        = "true"
      "storage.location.template" = "s3://${local.buckets[local.table_bucket[each.key]]}/${each.value.dir}/${each.value.location_template_suffix}/"
    },
    merge([
      for k in each.value.partition_keys : {
        for opt, v in k.projection : "projection.${k.name}.${opt}" => v
      }
    ]...)
  )

  dynamic "partition_keys" {
    for_each = each.value.partition_keys
    content {
      name = partition_keys.value.name
      type = partition_keys.value.type
    }
  }

  storage_descriptor {
    location      = "s3://${local.buckets[local.table_bucket[each.key]]}/${each.value.dir}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters            = { "serialization.format" = "1" }
    }

    dynamic "columns" {
      for_each = each.value.columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}
