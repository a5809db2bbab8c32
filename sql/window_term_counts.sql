-- sql/window_term_counts.sql: each window's term counts, the first half of
-- window_terms. window_terms.sql reads them three times (as the table
-- window_term_counts), so they are computed once, here.
--
-- Reads term_panes (term_panes.sql: counts per pane and term, or the stream's
-- per-shard partials of them, which add up). Panes roll up into windows as in
-- window_source_aggs.sql (a pane belongs to the windows starting $lookback
-- before it … at it, $slide apart).
--
-- Params: $slide, $lookback (intervals); $from, $to (windows starting in
-- [$from, $to)).
WITH window_panes AS (
    SELECT
        arrow_cast(unnest(generate_series(
            pane_start - arrow_cast($lookback, 'Interval(MonthDayNano)'),
            pane_start,
            arrow_cast($slide, 'Interval(MonthDayNano)'))), 'Timestamp(Microsecond, Some("UTC"))') AS window_start,
        term, n, n_scored, sum_score, n_negative
    FROM term_panes
)
SELECT window_start, term,
       sum(n) AS n, sum(n_scored) AS n_scored, sum(sum_score) AS sum_score, sum(n_negative) AS n_negative
FROM window_panes
WHERE window_start >= $from AND window_start < $to
GROUP BY window_start, term
