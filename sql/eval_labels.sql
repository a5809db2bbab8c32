-- sql/eval_labels.sql: the selected scorer's answers for `sentiflow eval`, for
-- scorers without class probabilities (the lexicon). Reads table eval_texts
-- (row_id, text); row_id pairs each answer with its gold label, whatever order
-- the partitions come back in.
SELECT row_id, score_sentiment(text) AS s
FROM eval_texts
