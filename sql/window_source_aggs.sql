-- sql/window_source_aggs.sql: partial aggregates per (window, source).
--
-- Event-time windows over scored_tweets.created_at with panes: rows are
-- binned into panes $slide wide with date_bin (aligned to $origin), and each
-- pane is added to every window that contains it, i.e. the windows starting
-- at pane_start - $lookback … pane_start, $slide apart ($lookback = $window -
-- $slide). Tumbling windows are $window = $slide: one window per pane. One
-- scan of the rows serves both output tables (windows.sql rolls these up).
--
-- Rows with a NULL score (unscorable) count in n_unscored only. n_fallback counts
-- the scored rows the run's model handed to its fallback scorer (--fallback). A row counts
-- as negative/positive by its label; a score without a label (data scored by
-- another system) counts by its sign.
-- sum_score is kept so averages can be re-aggregated exactly. The final
-- SELECT's combine rule is repeated in stream_merge.sql (see why there).
--
-- Params: $slide, $lookback (intervals); $origin (timestamp);
--         $from, $to: keep windows starting in [$from, $to);
--         $rows_to: last row time a kept window can hold ($to + $window).
WITH panes AS (
    SELECT
        date_bin(arrow_cast($slide, 'Interval(MonthDayNano)'),
                 created_at,
                 arrow_cast($origin, 'Timestamp(Microsecond, Some("UTC"))')) AS pane_start,
        source,
        count(sentiment_score)                                   AS n,
        count(*) - count(sentiment_score)                        AS n_unscored,
        sum(sentiment_score)                                     AS sum_score,
        min(sentiment_score)                                     AS min_score,
        max(sentiment_score)                                     AS max_score,
        count(*) FILTER (WHERE coalesce(sentiment_label = 'negative', sentiment_score < 0)) AS n_negative,
        count(*) FILTER (WHERE coalesce(sentiment_label = 'positive', sentiment_score > 0)) AS n_positive,
        count(sentiment_score) FILTER (WHERE fallback_reason IS NOT NULL) AS n_fallback
    FROM scored_tweets
    WHERE created_at >= $from AND created_at < $rows_to
    GROUP BY 1, 2
),
pane_windows AS (
    SELECT
        unnest(generate_series(
            pane_start - arrow_cast($lookback, 'Interval(MonthDayNano)'),
            pane_start,
            arrow_cast($slide, 'Interval(MonthDayNano)'))) AS ws,
        source, n, n_unscored, sum_score, min_score, max_score, n_negative, n_positive, n_fallback
    FROM panes
),
kept AS (
    SELECT arrow_cast(ws, 'Timestamp(Microsecond, Some("UTC"))') AS window_start, *
    FROM pane_windows
)
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
FROM kept
WHERE window_start >= $from AND window_start < $to
GROUP BY window_start, source
