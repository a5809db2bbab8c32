-- sql/report_driver_windows.sql: the windows whose drivers the report explains: the 5 most
-- negative windows of the period (by share_negative, with at least $min_n scored tweets).
-- The windows alerts fired in are added by the report.
-- Params: $from, $to (timestamps); $min_n (integer).
SELECT window_start, window_end, n, share_negative
FROM windows
WHERE window_start >= $from AND window_start < $to AND n >= $min_n AND share_negative IS NOT NULL
ORDER BY share_negative DESC, window_start
LIMIT 5
