-- sql/windows.sql: one row per window, all sources together.
--
-- Rolls window_source_aggs up over sources: counts and sums add, min/max
-- combine, the average is recomputed from the summed scores (exact, not an
-- average of averages).
--
-- Params: $window (interval).
SELECT
    window_start,
    arrow_cast(window_start + arrow_cast($window, 'Interval(MonthDayNano)'),
               'Timestamp(Microsecond, Some("UTC"))')               AS window_end,
    sum(n)                                                          AS n,
    sum(n_unscored)                                                 AS n_unscored,
    CASE WHEN sum(n) > 0 THEN sum(sum_score) / sum(n) END           AS avg_score,
    min(min_score)                                                  AS min_score,
    max(max_score)                                                  AS max_score,
    sum(n_negative)                                                 AS n_negative,
    sum(n_positive)                                                 AS n_positive,
    CASE WHEN sum(n) > 0 THEN CAST(sum(n_negative) AS DOUBLE) / sum(n) END AS share_negative,
    -- state kept by a stream before n_fallback existed has NULL there: none
    coalesce(sum(n_fallback), 0)                                    AS n_fallback,
    to_char(window_start, '%Y-%m-%d')                               AS dt
FROM window_source_aggs
GROUP BY window_start
ORDER BY window_start
