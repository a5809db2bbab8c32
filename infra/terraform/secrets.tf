# The OpenAI (or compatible) API key of the LLM scorer/generator. Terraform creates the secret,
# not its value: `aws secretsmanager put-secret-value --secret-id <arn> --secret-string sk-...`.
# Tasks get it as the OPENAI_API_KEY secret of their container (never a plain environment value).
resource "aws_secretsmanager_secret" "openai_api_key" {
  #checkov:skip=CKV2_AWS_57:Rotation: an OpenAI API key is rotated in the provider's console, not by a Lambda; rotate it there and put the new value.
  name                    = "${local.prefix}/openai-api-key"
  description             = "API key of the OpenAI-compatible endpoint used by sentiflow --scorer llm / generate --llm"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 7
}
