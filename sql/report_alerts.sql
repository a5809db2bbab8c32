-- sql/report_alerts.sql: alerts fired in the report's period.
-- Params: $from, $to (timestamps).
SELECT window_start, window_end, rule, source, metric, value, threshold, message
FROM alerts
WHERE window_start >= $from AND window_start < $to
ORDER BY window_start, rule
