-- sql/athena/sentiment_over_time.sql: tweets, mean score and negative share per hour.
-- Athena (Trino SQL) over the windows table; execution parameters: first day, last day
-- (YYYY-MM-DD, the dt partitions to scan, so partition projection prunes the rest).
-- Means are weighted by each window's row count, so hours with busy windows count more.
SELECT
    date_trunc('hour', window_start)                              AS hour_start,
    sum(n)                                                        AS tweets,
    sum(avg_score * n) / nullif(sum(n), 0)                        AS avg_score,
    CAST(sum(n_negative) AS double) / nullif(sum(n), 0)           AS share_negative,
    min(min_score)                                                AS min_score,
    max(max_score)                                                AS max_score
FROM windows
WHERE dt BETWEEN ? AND ?
GROUP BY date_trunc('hour', window_start)
ORDER BY hour_start
