# AWS Batch on Fargate: the score and aggregate jobs on demand, and backfill array jobs over a
# date range, one UTC day (one dt= partition) per child. A child finds its day from its array
# index with a time template sentiflow expands: {${BACKFILL_START}+${AWS_BATCH_JOB_ARRAY_INDEX}d}.
#   s=$(aws batch submit-job --job-queue <queue> --job-definition <prefix>-backfill-score \
#        --job-name backfill-score --array-properties size=<days> \
#        --container-overrides 'environment=[{name=BACKFILL_START,value=2025-02-01}]' --query jobId --output text)
#   aws batch submit-job --job-queue <queue> --job-definition <prefix>-backfill-aggregate \
#        --job-name backfill-aggregate --array-properties size=<days> --depends-on jobId=$s,type=N_TO_N \
#        --container-overrides 'environment=[{name=BACKFILL_START,value=2025-02-01}]'
resource "aws_iam_role" "batch_service" {
  name               = "${local.prefix}-batch-service"
  assume_role_policy = data.aws_iam_policy_document.assume["batch"].json
}

resource "aws_iam_role_policy_attachment" "batch_service" {
  role       = aws_iam_role.batch_service.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSBatchServiceRole"
}

resource "aws_batch_compute_environment" "fargate" {
  compute_environment_name = "${local.prefix}-fargate"
  type                     = "MANAGED"
  service_role             = aws_iam_role.batch_service.arn

  compute_resources {
    type               = "FARGATE"
    max_vcpus          = var.batch_max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = [aws_security_group.tasks.id]
  }

  depends_on = [aws_iam_role_policy_attachment.batch_service]
}

resource "aws_batch_job_queue" "sentiflow" {
  name     = local.prefix
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate.arn
  }
}

locals {
  backfill_day = "{$${BACKFILL_START}+$${AWS_BATCH_JOB_ARRAY_INDEX}d}"
  batch_jobs = {
    score     = { command = local.commands.score, role = "score", size = var.task_size.score }
    aggregate = { command = local.commands.aggregate, role = "aggregate", size = var.task_size.aggregate }
    # child i: score day BACKFILL_START + i (its Firehose deliveries) ...
    backfill-score = {
      role    = "score"
      size    = var.task_size.score
      command = ["score", "--scorer", var.scorer, "--input", "${local.roots.raw}/firehose/tweets/dt=${local.backfill_day}/", "--out", local.roots.scored, "--metrics", "emf"]
    }
    # ... then recompute that day's windows (N_TO_N dependency on the score child)
    backfill-aggregate = {
      role    = "aggregate"
      size    = var.task_size.aggregate
      command = ["aggregate", "--input", "${local.roots.scored}/scored", "--out", local.roots.aggregates, "--window", var.window, "--from", local.backfill_day, "--to", "{$${BACKFILL_START}+$${AWS_BATCH_JOB_ARRAY_INDEX}d+1d}", "--metrics", "emf"]
    }
  }
}

resource "aws_batch_job_definition" "job" {
  for_each              = local.batch_jobs
  name                  = "${local.prefix}-${each.key}"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  retry_strategy {
    attempts = 2
  }

  timeout {
    attempt_duration_seconds = 4 * 3600
  }

  container_properties = jsonencode({
    image            = local.image
    command          = each.value.command
    jobRoleArn       = aws_iam_role.job[each.value.role].arn
    executionRoleArn = aws_iam_role.execution.arn
    user             = "10001"
    readonlyRootFilesystem = true
    volumes          = [{ name = "tmp" }]
    mountPoints      = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    resourceRequirements = [
      { type = "VCPU", value = tostring(each.value.size.cpu / 1024) },
      { type = "MEMORY", value = tostring(each.value.size.memory) },
    ]
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    networkConfiguration         = { assignPublicIp = "DISABLED" }
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "SENTIFLOW_NO_PROGRESS", value = "1" },
      { name = "SENTIFLOW_METRICS_NAMESPACE", value = local.metrics_namespace },
    ]
    secrets = [{ name = "OPENAI_API_KEY", valueFrom = aws_secretsmanager_secret.openai_api_key.arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.job[each.value.role].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "batch-${each.key}"
      }
    }
  })
}
