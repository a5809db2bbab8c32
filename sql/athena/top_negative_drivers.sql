-- sql/athena/top_negative_drivers.sql: what the negative tweets of the last 24 hours were about.
-- Athena (Trino SQL) over window_terms and windows; execution parameters: the first day
-- (YYYY-MM-DD, the dt partition of the start), the start and the end of the 24 hours
-- (timestamps 'YYYY-MM-DD HH:MM:SS', UTC, end exclusive). The terms of the windows whose
-- share of negative tweets was 45 % or more, ranked by neg_lift (the term's z-score in the
-- window's negative tweets against its other tweets): the hashtags, cashtags and words
-- that drove the negative share.
SELECT
    t.term,
    t.kind,
    count(*)                                AS windows,
    sum(t.n)                                AS tweets,
    round(avg(t.share_negative), 3)         AS share_negative,
    round(max(t.neg_lift), 2)               AS max_neg_lift,
    round(avg(t.lift), 2)                   AS avg_lift,
    min(t.window_start)                     AS first_window,
    max(t.window_end)                       AS last_window
FROM window_terms t
JOIN windows w ON w.window_start = t.window_start AND w.dt = t.dt
WHERE t.dt >= ?
  AND t.window_start >= CAST(? AS timestamp)
  AND t.window_start < CAST(? AS timestamp)
  AND t.neg_lift > 0
  AND w.share_negative >= 0.45
GROUP BY t.term, t.kind
ORDER BY max_neg_lift DESC, tweets DESC, t.term
LIMIT 20
