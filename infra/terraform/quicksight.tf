# QuickSight (optional: set var.quicksight_principal_arn; the account must be subscribed):
# an Athena data source over the workgroup and data sets over windows, windows_by_source,
# window_terms (what drove each window) and scored_tweets, columns from glue_schema.json. Build the dashboard on them in the console
# (infra/README.md lists the visuals); analysis definitions are left out on purpose: their
# JSON is long and brittle across QuickSight versions.
locals {
  qs_enabled  = var.quicksight_principal_arn != ""
  qs_datasets = local.qs_enabled ? toset(["windows", "windows_by_source", "window_terms", "scored_tweets"]) : toset([])
  qs_types    = { string = "STRING", timestamp = "DATETIME", double = "DECIMAL", bigint = "INTEGER" }
}

resource "aws_quicksight_data_source" "athena" {
  count          = local.qs_enabled ? 1 : 0
  data_source_id = "${local.prefix}-athena"
  name           = "sentiflow (${var.environment})"
  type           = "ATHENA"

  parameters {
    athena {
      work_group = aws_athena_workgroup.sentiflow.name
    }
  }

  permission {
    principal = var.quicksight_principal_arn
    actions = ["quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions", "quicksight:PassDataSource",
    "quicksight:UpdateDataSource", "quicksight:DeleteDataSource", "quicksight:UpdateDataSourcePermissions"]
  }
}

resource "aws_quicksight_data_set" "t" {
  for_each    = local.qs_datasets
  data_set_id = "${local.prefix}-${each.key}"
  name        = "sentiflow ${each.key}"
  import_mode = "DIRECT_QUERY"

  physical_table_map {
    physical_table_map_id = each.key
    relational_table {
      data_source_arn = aws_quicksight_data_source.athena[0].arn
      catalog         = "AwsDataCatalog"
      schema          = aws_glue_catalog_database.sentiflow.name
      name            = each.key
      dynamic "input_columns" {
        for_each = concat(local.schema[each.key].columns, local.schema[each.key].partition_keys)
        content {
          name = input_columns.value.name
          type = local.qs_types[input_columns.value.type]
        }
      }
    }
  }

  permissions {
    principal = var.quicksight_principal_arn
    actions = ["quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
    "quicksight:DescribeIngestion", "quicksight:ListIngestions", "quicksight:UpdateDataSet", "quicksight:DeleteDataSet",
    "quicksight:CreateIngestion", "quicksight:CancelIngestion", "quicksight:UpdateDataSetPermissions"]
  }
}
