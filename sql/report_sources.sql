-- sql/report_sources.sql: per-source comparison for the report.
-- Params: $from, $to (timestamps).
SELECT
    source,
    count(*)                                                AS n,
    avg(sentiment_score)                                    AS avg_score,
    count(*) FILTER (WHERE sentiment_label = 'negative')    AS n_negative,
    count(*) FILTER (WHERE sentiment_label = 'neutral')     AS n_neutral,
    count(*) FILTER (WHERE sentiment_label = 'positive')    AS n_positive
FROM scored_tweets
WHERE created_at >= $from AND created_at < $to
GROUP BY source
ORDER BY n DESC, source
