-- sql/stream_merge.sql: streaming mode's window state after one micro-batch.
--
-- Reads batch_aggs (window_source_aggs.sql over the micro-batch's on-time
-- rows) and state_aggs (the open windows kept from earlier batches), both in
-- window_source_aggs' columns, and combines them per (window, source):
-- counts and sums add, min/max combine, so the result is exactly what one
-- aggregation over all the rows would give.
SELECT
    window_start,
    source,
    sum(n)           AS n,
    sum(n_unscored)  AS n_unscored,
    sum(sum_score)   AS sum_score,
    min(min_score)   AS min_score,
    max(max_score)   AS max_score,
    sum(n_negative)  AS n_negative,
    sum(n_positive)  AS n_positive
FROM (
    SELECT * FROM batch_aggs
    UNION ALL
    SELECT * FROM state_aggs
) AS t
GROUP BY window_start, source
ORDER BY window_start, source
