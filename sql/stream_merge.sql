-- sql/stream_merge.sql: streaming mode's window state after one micro-batch.
--
-- Reads batch_aggs (window_source_aggs.sql over the micro-batch's on-time
-- rows) and state_aggs (the open windows kept from earlier batches), both in
-- window_source_aggs' columns, and combines them per (window, source):
-- counts and sums add, min/max combine, so the result is exactly what one
-- aggregation over all the rows would give.
--
-- The combine rule (sum the counts and sums, min the mins, max the maxes, per
-- window_start and source) is also the last step of window_source_aggs.sql,
-- where it folds panes into windows. It is written twice on purpose: to share
-- it, window_source_aggs.sql would have to register its panes as a table and
-- run a second query (SQL files cannot call each other, and a view would need
-- that same second registration per run). The stream tests check that windows
-- emitted this way equal the batch `aggregate` of the same rows, so the two
-- copies cannot drift apart unnoticed.
SELECT
    window_start,
    source,
    sum(n)           AS n,
    sum(n_unscored)  AS n_unscored,
    sum(sum_score)   AS sum_score,
    min(min_score)   AS min_score,
    max(max_score)   AS max_score,
    sum(n_negative)  AS n_negative,
    sum(n_positive)  AS n_positive,
    sum(n_fallback)  AS n_fallback
FROM (
    SELECT * FROM batch_aggs
    UNION ALL
    SELECT * FROM state_aggs
) AS t
GROUP BY window_start, source
ORDER BY window_start, source
