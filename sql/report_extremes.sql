-- sql/report_extremes.sql: the 10 most positive and the 10 most negative tweets.
-- Params: $from, $to (timestamps).
SELECT * FROM (
    SELECT 'positive' AS side, created_at, source, sentiment_score, text, tweet_id
    FROM scored_tweets
    WHERE sentiment_score IS NOT NULL AND created_at >= $from AND created_at < $to
    ORDER BY sentiment_score DESC, tweet_id
    LIMIT 10
)
UNION ALL
SELECT * FROM (
    SELECT 'negative' AS side, created_at, source, sentiment_score, text, tweet_id
    FROM scored_tweets
    WHERE sentiment_score IS NOT NULL AND created_at >= $from AND created_at < $to
    ORDER BY sentiment_score ASC, tweet_id
    LIMIT 10
)
