# Optional Apache DataFusion Ballista cluster (off by default: var.ballista_cluster): a scheduler service
# and an executor service on Fargate, found through Cloud Map DNS (scheduler.<namespace>). When on, the
# scheduled `score` and `aggregate` tasks run their queries on it (`--cluster df://scheduler...:50050`);
# the clients still write the outputs, the executors only read. Every role runs the same image with the
# same scorer options (a client refuses executors that score with another scorer). See infra/README.md.
locals {
  ballista_count     = var.ballista_cluster ? 1 : 0
  ballista_namespace = "${local.prefix}.ballista.local"
  ballista_scheduler = "scheduler.${local.ballista_namespace}:${local.ballista_ports.scheduler}"
  ballista_ports     = { scheduler = 50050, flight = 50051, grpc = 50052 }
  ballista_commands = {
    scheduler = ["cluster", "scheduler", "--bind", "0.0.0.0:${local.ballista_ports.scheduler}", "--external-host", "scheduler.${local.ballista_namespace}", "--scorer", var.scorer]
    executor  = ["cluster", "executor", "--scheduler", local.ballista_scheduler, "--bind", "0.0.0.0:${local.ballista_ports.flight}", "--grpc-port", tostring(local.ballista_ports.grpc), "--scorer", var.scorer, "--work-dir", "/tmp/ballista"]
  }
  ballista_roles = var.ballista_cluster ? local.ballista_commands : {}
}

resource "aws_service_discovery_private_dns_namespace" "ballista" {
  count       = local.ballista_count
  name        = local.ballista_namespace
  description = "sentiflow Ballista scheduler discovery"
  vpc         = var.vpc_id
}

resource "aws_service_discovery_service" "scheduler" {
  count = local.ballista_count
  name  = "scheduler"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.ballista[0].id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

# Ballista traffic stays between the cluster's tasks and the job tasks: scheduler gRPC (clients,
# executors), executor Flight (shuffle between executors, results to clients) and task gRPC (scheduler).
resource "aws_security_group" "ballista" {
  count       = local.ballista_count
  name        = "${local.prefix}-ballista"
  description = "sentiflow Ballista scheduler and executors: their ports from each other and the job tasks; HTTPS out"
  vpc_id      = var.vpc_id

  ingress {
    description = "scheduler gRPC, executor Flight and gRPC between the cluster's tasks"
    from_port   = local.ballista_ports.scheduler
    to_port     = local.ballista_ports.grpc
    protocol    = "tcp"
    self        = true
  }
  ingress {
    description     = "job tasks: submit to the scheduler, fetch results from the executors"
    from_port       = local.ballista_ports.scheduler
    to_port         = local.ballista_ports.flight
    protocol        = "tcp"
    security_groups = [aws_security_group.tasks.id]
  }
  egress {
    description = "between the cluster's tasks"
    from_port   = local.ballista_ports.scheduler
    to_port     = local.ballista_ports.grpc
    protocol    = "tcp"
    self        = true
  }
  egress {
    description = "HTTPS to S3, ECR and CloudWatch Logs"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group_rule" "tasks_to_ballista" {
  count                    = local.ballista_count
  description              = "job tasks to the Ballista scheduler and executors"
  type                     = "egress"
  security_group_id        = aws_security_group.tasks.id
  from_port                = local.ballista_ports.scheduler
  to_port                  = local.ballista_ports.flight
  protocol                 = "tcp"
  source_security_group_id = aws_security_group.ballista[0].id
}

# The cluster reads the tables and the rows `score` stages; it writes nothing to S3.
resource "aws_iam_role" "ballista" {
  count              = local.ballista_count
  name               = "${local.prefix}-ballista"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs_tasks"].json
}

data "aws_iam_policy_document" "ballista" {
  statement {
    sid       = "Read"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = flatten([for b in ["raw", "scored", "aggregates"] : [local.bucket_arn[b], "${local.bucket_arn[b]}/*"]])
  }
  statement {
    sid       = "DataKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "ballista" {
  count  = local.ballista_count
  name   = "ballista"
  role   = aws_iam_role.ballista[0].id
  policy = data.aws_iam_policy_document.ballista.json
}

resource "aws_cloudwatch_log_group" "ballista" {
  for_each          = local.ballista_roles
  name              = "/sentiflow/${var.environment}/ballista-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_ecs_task_definition" "ballista" {
  for_each                 = local.ballista_roles
  family                   = "${local.prefix}-ballista-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.ballista_task_size[each.key].cpu
  memory                   = var.ballista_task_size[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.ballista[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([merge(local.container, {
    name         = each.key
    command      = each.value
    portMappings = [for name, port in local.ballista_ports : { containerPort = port, protocol = "tcp" } if each.key == "executor" ? name != "scheduler" : name == "scheduler"]
    environment = [
      { name = "AWS_REGION", value = var.region },
      { name = "SENTIFLOW_NO_PROGRESS", value = "1" },
      { name = "RUST_LOG", value = "warn,sentiflow=info,sentiflow_jobs=info,sentiflow_cluster=info" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ballista[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  })])
}

resource "aws_ecs_service" "ballista" {
  for_each        = local.ballista_roles
  name            = "${local.prefix}-ballista-${each.key}"
  cluster         = aws_ecs_cluster.sentiflow.id
  task_definition = aws_ecs_task_definition.ballista[each.key].arn
  desired_count   = each.key == "scheduler" ? 1 : var.ballista_executors
  launch_type     = "FARGATE"

  # one scheduler: a deploy stops the old one before the new one registers in DNS
  deployment_maximum_percent         = each.key == "scheduler" ? 100 : 200
  deployment_minimum_healthy_percent = each.key == "scheduler" ? 0 : 100

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.ballista[0].id]
    assign_public_ip = false
  }

  dynamic "service_registries" {
    for_each = each.key == "scheduler" ? [1] : []
    content {
      registry_arn = aws_service_discovery_service.scheduler[0].arn
    }
  }
}
