-- sql/eval_probs.sql: a classifier's per-label probabilities for `sentiflow eval`.
-- Reads table eval_texts (row_id, text). sentiment_probs(text) is the selected
-- classifier (STRUCT of one FLOAT per model label, in id2label order); the
-- predicted label is its most probable class. row_id pairs each answer with its
-- gold label, whatever order the partitions come back in.
SELECT row_id, sentiment_probs(text) AS probs
FROM eval_texts
