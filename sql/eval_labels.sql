-- sql/eval_labels.sql: the selected scorer's labels for `sentiflow eval`, for
-- scorers without class probabilities (the lexicon). Reads table eval_texts (text).
SELECT get_field(score_sentiment(text), 'label') AS label
FROM eval_texts
