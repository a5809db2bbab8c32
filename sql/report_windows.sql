-- sql/report_windows.sql: the windows the report charts.
-- Params: $from, $to (timestamps): windows starting in [$from, $to).
SELECT window_start, window_end, n, n_unscored, avg_score, share_negative, n_negative, n_positive
FROM windows
WHERE window_start >= $from AND window_start < $to
ORDER BY window_start
