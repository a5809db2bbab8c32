-- sql/athena/alert_history.sql: alerts fired per day and rule, with the latest one.
-- Athena (Trino SQL) over alerts; execution parameters: first day, last day (YYYY-MM-DD).
SELECT
    dt                                                            AS day,
    rule,
    count(*)                                                      AS alerts,
    max(value)                                                    AS worst_value,
    max(window_start)                                             AS last_window_start,
    element_at(array_agg(message ORDER BY window_start DESC), 1)  AS last_message
FROM alerts
WHERE dt BETWEEN ? AND ?
GROUP BY dt, rule
ORDER BY day, rule
