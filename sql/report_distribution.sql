-- sql/report_distribution.sql: histogram of scores in 20 bins of width 0.1 over [-1, 1],
-- split by label, so the chart shows each band's negative / neutral / positive tweets
-- (a 3-class model's neutral tweets sit around 0, but a label is the most probable class,
-- not a score band).
-- Params: $from, $to (timestamps).
SELECT
    CAST(least(greatest(floor((sentiment_score + 1.0) * 10.0), 0.0), 19.0) AS BIGINT) AS bin,
    sentiment_label AS label,
    count(*) AS n
FROM scored_tweets
WHERE sentiment_score IS NOT NULL AND created_at >= $from AND created_at < $to
GROUP BY 1, 2
ORDER BY 1, 2
