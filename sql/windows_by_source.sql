-- sql/windows_by_source.sql: one row per (window, source).
--
-- Reads window_source_aggs (the result of window_source_aggs.sql).
-- window_end = window_start + $window; dt (partition key) is the UTC day of
-- window_start. avg_score is sum/n, NULL for a window without scored rows.
--
-- Params: $window (interval).
SELECT
    window_start,
    arrow_cast(window_start + arrow_cast($window, 'Interval(MonthDayNano)'),
               'Timestamp(Microsecond, Some("UTC"))')               AS window_end,
    source,
    n,
    n_unscored,
    CASE WHEN n > 0 THEN sum_score / n END                          AS avg_score,
    min_score,
    max_score,
    n_negative,
    n_positive,
    CASE WHEN n > 0 THEN CAST(n_negative AS DOUBLE) / n END         AS share_negative,
    coalesce(n_fallback, 0)                                         AS n_fallback,
    to_char(window_start, '%Y-%m-%d')                               AS dt
FROM window_source_aggs
ORDER BY window_start, source
