variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name, part of every resource name (e.g. dev, prod)."
  type        = string
  default     = "dev"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "sentiflow"
}

variable "image_tag" {
  description = "Tag of the sentiflow image in the ECR repository this module creates (push it first, see infra/README.md)."
  type        = string
  default     = "0.1.0"
}

variable "vpc_id" {
  description = "VPC for the Fargate tasks and the Batch compute environment."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with a NAT gateway or VPC endpoints for S3, ECR, Logs, Kinesis, Secrets Manager) for the tasks."
  type        = list(string)
}

variable "kinesis_shard_count" {
  description = "Shards of the tweets stream; 0 = on-demand capacity mode."
  type        = number
  default     = 0
}

variable "kinesis_retention_hours" {
  description = "How long the stream keeps records (24 to 8760). Longer retention lets ingest recover from longer outages."
  type        = number
  default     = 48
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the job logs."
  type        = number
  default     = 365
}

variable "raw_expiration_days" {
  description = "Days after which raw objects expire (scored data and aggregates are kept)."
  type        = number
  default     = 400
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query data usage limit of the Athena workgroup, in bytes (minimum 10 MB)."
  type        = number
  default     = 10737418240 # 10 GiB
}

variable "scorer" {
  description = "Scorer of the score and stream jobs: onnx (the model in the image), lexicon or llm."
  type        = string
  default     = "onnx"
  validation {
    condition     = contains(["onnx", "lexicon", "llm"], var.scorer)
    error_message = "scorer must be onnx, lexicon or llm."
  }
}

variable "window" {
  description = "Window size of the aggregate and stream jobs (e.g. 5m, 1h)."
  type        = string
  default     = "5m"
}

variable "schedules" {
  description = "EventBridge Scheduler expressions (UTC) of the batch jobs; an empty string disables one. ingest is off by default because Firehose already lands the stream in S3; enable it (e.g. rate(15 minutes)) to land it with sentiflow's exactly-once checkpoints instead."
  type = object({
    ingest    = string
    score     = string
    aggregate = string
  })
  default = {
    ingest    = ""
    score     = "cron(20 * * * ? *)"
    aggregate = "cron(35 * * * ? *)"
  }
}

variable "task_size" {
  description = "Fargate CPU units and memory (MiB) per job."
  type = map(object({
    cpu    = number
    memory = number
  }))
  default = {
    generate  = { cpu = 512, memory = 1024 }
    ingest    = { cpu = 512, memory = 1024 }
    score     = { cpu = 2048, memory = 4096 }
    aggregate = { cpu = 1024, memory = 2048 }
    stream    = { cpu = 2048, memory = 4096 }
  }
}

variable "run_stream_service" {
  description = "Run `sentiflow stream` as an always-on ECS service."
  type        = bool
  default     = false
}

variable "stream_workers" {
  description = "Tasks of the stream service: workers that share the stream's shards by leases (at most one per shard does work)."
  type        = number
  default     = 1
  validation {
    condition     = var.stream_workers >= 1 && var.stream_workers <= 64
    error_message = "stream_workers must be between 1 and 64."
  }
}

variable "batch_max_vcpus" {
  description = "Upper bound of the Batch Fargate compute environment (backfills)."
  type        = number
  default     = 16
}

variable "openai_base_url" {
  description = "OpenAI-compatible base URL of the LLM scorer/generator (the key lives in Secrets Manager)."
  type        = string
  default     = "https://api.openai.com/v1"
}

variable "openai_model" {
  description = "Chat model of the LLM scorer/generator."
  type        = string
  default     = "gpt-4o-mini"
}

variable "alarm_email" {
  description = "Email subscribed to the alarm topic; empty = no subscription."
  type        = string
  default     = ""
}

variable "dead_letter_alarm_percent" {
  description = "Alarm when more than this share (%) of the records a job read in an hour went to _rejected/."
  type        = number
  default     = 1
}

variable "watermark_delay_alarm_minutes" {
  description = "Alarm when the stream service's watermark is this far behind the wall clock (3 × 5 minutes)."
  type        = number
  default     = 15
}

variable "shard_lag_alarm_minutes" {
  description = "Alarm when a shard the stream service reads is this far behind its tip (3 × 5 minutes)."
  type        = number
  default     = 15
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group ARN granted the data source and data sets; empty = no QuickSight resources (QuickSight must be subscribed in the account first)."
  type        = string
  default     = ""
}

variable "ballista_cluster" {
  description = "Run an Apache DataFusion Ballista cluster (scheduler + executors on Fargate) and send the scheduled score and aggregate jobs' queries to it. Off: the jobs run in one task."
  type        = bool
  default     = false
}

variable "ballista_executors" {
  description = "Executor tasks of the Ballista cluster."
  type        = number
  default     = 2
  validation {
    condition     = var.ballista_executors >= 1 && var.ballista_executors <= 64
    error_message = "ballista_executors must be between 1 and 64."
  }
}

variable "ballista_task_size" {
  description = "Fargate CPU units and memory (MiB) of the Ballista scheduler and of each executor (which loads the model once)."
  type = map(object({
    cpu    = number
    memory = number
  }))
  default = {
    scheduler = { cpu = 512, memory = 1024 }
    executor  = { cpu = 2048, memory = 4096 }
  }
}
