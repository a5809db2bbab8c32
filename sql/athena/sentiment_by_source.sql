-- sql/athena/sentiment_by_source.sql: per day and source, tweets, mean score, negative share.
-- Athena (Trino SQL) over windows_by_source; execution parameters: first day, last day (YYYY-MM-DD).
SELECT
    dt                                                            AS day,
    source,
    sum(n)                                                        AS tweets,
    sum(avg_score * n) / nullif(sum(n), 0)                        AS avg_score,
    CAST(sum(n_negative) AS double) / nullif(sum(n), 0)           AS share_negative
FROM windows_by_source
WHERE dt BETWEEN ? AND ?
GROUP BY dt, source
ORDER BY day, tweets DESC, source
