# One Fargate task definition per job; the image's entrypoint is `sentiflow`, so a task passes
# a subcommand. Scheduled runs name their hour/day with time templates that sentiflow expands
# when it starts ({now-1h|%Y-%m-%d}: jobs/src/timeexpr.rs), so no shell is involved.
locals {
  last_hour = "dt={now-1h|%Y-%m-%d}/hour={now-1h|%H}"

  commands = {
    # a demo feed of synthetic tweets (for posts written by the LLM: add "--llm", "--topic", "...")
    generate = ["generate", "--rows", "5000", "--to", "${local.roots.raw}/generated/"]
    # drain the stream into raw Parquet, exactly once, and stop (`sentiflow ingest --until-caught-up`)
    ingest = ["ingest", "--from", "kinesis://${aws_kinesis_stream.tweets.name}", "--to", "${local.roots.raw}/raw/", "--until-caught-up", "--metrics", "emf"]
    # score last hour's Firehose delivery (Firehose buffers up to 5 minutes; the schedule runs at :20)
    # (with var.ballista_cluster, score and aggregate run their queries on the Ballista cluster: ballista.tf)
    score = concat(["score", "--scorer", var.scorer, "--input", "${local.roots.raw}/firehose/tweets/${local.last_hour}/", "--out", local.roots.scored, "--metrics", "emf"], local.on_cluster)
    # recompute the windows of last hour's UTC day (aggregate replaces whole days)
    aggregate = concat(["aggregate", "--input", "${local.roots.scored}/scored", "--out", local.roots.aggregates, "--window", var.window, "--from", "{now-1h}", "--to", "{now-1h+1d}", "--metrics", "emf"], local.on_cluster)
    # always-on micro-batch streaming (`sentiflow stream`): raw/, scored/, late/, windows/, windows_by_source/, window_terms/, alerts/ under the aggregates root
    # --metrics emf: a CloudWatch EMF line every minute (watermark delay, shard lag, rejected rows): monitoring.tf's alarms
    stream = ["stream", "--from", "kinesis://${aws_kinesis_stream.tweets.name}", "--scorer", var.scorer, "--window", var.window, "--to", local.roots.aggregates, "--metrics", "emf"]
  }

  scheduled  = { for k, v in var.schedules : k => v if v != "" }

  # what every container (jobs and the Ballista roles) shares: the image, non-root, a read-only
  # root filesystem with /tmp as the one writable volume
  container = {
    image                  = local.image
    essential              = true
    user                   = "10001"
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
  }
  on_cluster = var.ballista_cluster ? ["--cluster", "df://${local.ballista_scheduler}"] : []
  # the jobs' `--metrics emf` lines (CloudWatch extracts them from the log groups; no agent)
  metrics_namespace = "sentiflow/${var.environment}"
}

resource "aws_ecs_cluster" "sentiflow" {
  name = local.prefix
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_security_group" "tasks" {
  name        = "${local.prefix}-tasks"
  description = "sentiflow tasks: no inbound, HTTPS out (S3, Kinesis, ECR, Logs, Secrets Manager, OpenAI)"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs and the LLM endpoint"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "job" {
  for_each                 = local.commands
  family                   = "${local.prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_size[each.key].cpu
  memory                   = var.task_size[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.job[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container, {
    name    = each.key
    command = each.value
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "SENTIFLOW_LLM_BASE_URL", value = var.openai_base_url },
      { name = "SENTIFLOW_LLM_MODEL", value = var.openai_model },
      { name = "SENTIFLOW_NO_PROGRESS", value = "1" },
      { name = "SENTIFLOW_METRICS_NAMESPACE", value = local.metrics_namespace },
      { name = "RUST_LOG", value = "warn,sentiflow=info,sentiflow_jobs=info,sentiflow_udfs=info" },
    ]
    secrets = [{ name = "OPENAI_API_KEY", valueFrom = aws_secretsmanager_secret.openai_api_key.arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.job[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  })])
}

resource "aws_ecs_service" "stream" {
  count           = var.run_stream_service ? 1 : 0
  name            = "${local.prefix}-stream"
  cluster         = aws_ecs_cluster.sentiflow.id
  task_definition = aws_ecs_task_definition.job["stream"].arn
  desired_count   = var.stream_workers
  launch_type     = "FARGATE"

  # workers share the shards by leases in S3 (each task's hostname makes its worker id unique);
  # a deploy may run old and new tasks side by side: a replaced task's shards move when it stops
  deployment_maximum_percent         = 200
  deployment_minimum_healthy_percent = 100

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
}

resource "aws_scheduler_schedule" "job" {
  for_each                     = local.scheduled
  name                         = "${local.prefix}-${each.key}"
  schedule_expression          = each.value
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.data.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.sentiflow.arn
    role_arn = aws_iam_role.scheduler.arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.job[each.key].arn
      launch_type         = "FARGATE"
      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = [aws_security_group.tasks.id]
        assign_public_ip = false
      }
    }

    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 3600
    }
  }
}
