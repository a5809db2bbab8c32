-- sql/compare.sql: two scorers' results on the same tweets, side by side.
--
-- Reads tables a_scored and b_scored (the scored schema; `sentiflow compare`
-- registers the scored/ tables of its two data roots under these names).
-- One row per tweet scored by both, in tweet_id order.
SELECT
    a.tweet_id,
    a.sentiment_score  AS a_score,
    b.sentiment_score  AS b_score,
    a.sentiment_label  AS a_label,
    b.sentiment_label  AS b_label,
    a.truth_label,
    a.scorer           AS a_scorer,
    b.scorer           AS b_scorer
FROM a_scored a
JOIN b_scored b ON a.tweet_id = b.tweet_id
ORDER BY a.tweet_id
