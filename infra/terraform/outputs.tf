output "ecr_repository_url" {
  description = "Push the sentiflow image here (tag = var.image_tag)."
  value       = aws_ecr_repository.sentiflow.repository_url
}

output "buckets" {
  description = "Bucket names by role."
  value       = local.buckets
}

output "data_roots" {
  description = "The --out/--input roots the jobs use."
  value       = local.roots
}

output "kinesis_stream" {
  value = aws_kinesis_stream.tweets.name
}

output "firehose_streams" {
  value = { raw = aws_kinesis_firehose_delivery_stream.raw.name, scored = aws_kinesis_firehose_delivery_stream.scored.name }
}

output "glue_database" {
  value = aws_glue_catalog_database.sentiflow.name
}

output "athena_workgroup" {
  value = aws_athena_workgroup.sentiflow.name
}

output "ecs_cluster" {
  value = aws_ecs_cluster.sentiflow.name
}

output "task_definitions" {
  value = { for k, t in aws_ecs_task_definition.job : k => t.arn }
}

output "batch_job_queue" {
  value = aws_batch_job_queue.sentiflow.arn
}

output "batch_job_definitions" {
  value = { for k, d in aws_batch_job_definition.job : k => d.arn }
}

output "openai_api_key_secret_arn" {
  description = "Put the API key here: aws secretsmanager put-secret-value --secret-id <arn> --secret-string ..."
  value       = aws_secretsmanager_secret.openai_api_key.arn
}

output "alarm_topic_arn" {
  value = aws_sns_topic.alarms.arn
}
