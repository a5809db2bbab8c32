-- sql/eval_probs.sql: a classifier's per-label probabilities for `sentiflow eval`.
-- Reads table eval_texts (text). sentiment_probs(text) is the selected
-- classifier (STRUCT of one FLOAT per model label, in id2label order); the
-- predicted label is its most probable class.
SELECT sentiment_probs(text) AS probs
FROM eval_texts
