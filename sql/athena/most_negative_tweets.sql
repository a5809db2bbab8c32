-- sql/athena/most_negative_tweets.sql: the 20 most negative scored tweets of a time window.
-- Athena (Trino SQL) over scored_tweets; execution parameters: day (YYYY-MM-DD, the dt
-- partition), window start, window end (timestamps 'YYYY-MM-DD HH:MM:SS', UTC, end exclusive).
SELECT
    created_at,
    source,
    tweet_id,
    sentiment_score,
    sentiment_label,
    text
FROM scored_tweets
WHERE dt = ?
  AND created_at >= CAST(? AS timestamp)
  AND created_at < CAST(? AS timestamp)
  AND sentiment_score IS NOT NULL
ORDER BY sentiment_score ASC, tweet_id
LIMIT 20
