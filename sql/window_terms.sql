-- sql/window_terms.sql: what drove each window — its top terms by lift.
--
-- Reads window_term_counts (window_term_counts.sql: each window's counts per
-- term) and, for the background, term_panes (term_panes.sql: counts per pane
-- and term).
--
-- lift: the z-score of the term's log-odds in the window against the rest of
-- the background, with an informative Dirichlet prior (Monroe, Colaresi &
-- Quinn 2008, "Fightin' Words", eqs. 16 and 20):
--   a_w   = $alpha0 * y_w(bg) / n(bg)                  prior from the background
--   delta = ln((y_i + a_w) / (n_i + $alpha0 - y_i - a_w))
--         - ln((y_j + a_w) / (n_j + $alpha0 - y_j - a_w))          (eq. 16)
--   var   = 1 / (y_i + a_w) + 1 / (y_j + a_w)                       (eq. 20)
--   lift  = delta / sqrt(var)
-- where i = the window, j = the background less the window, y_w = tweets
-- containing term w, n = the sum of y over all terms (each tweet counts each
-- of its distinct terms once). The background is every pane read when
-- $trailing is false (the whole scored range of the run), else the panes in
-- [window_end - $background, window_end).
-- neg_lift: the same statistic with i = the window's negative tweets and
-- j = its other scored tweets, and the same prior: what the negative tweets
-- talk about.
--
-- Per window at most $top_k terms with n >= $min_count, ranked by lift, ties
-- broken by term, so every run over the same rows gives the same rows.
--
-- Params: $window, $background (intervals); $trailing (boolean); $alpha0
-- (double); $top_k, $min_count (integers).
WITH wt AS (
    SELECT * FROM window_term_counts
),
wtot AS (
    SELECT window_start,
           CAST(sum(n) AS DOUBLE)                           AS tot,
           CAST(sum(n_negative) AS DOUBLE)                  AS tot_neg,
           CAST(sum(n_scored) - sum(n_negative) AS DOUBLE)  AS tot_other
    FROM wt
    GROUP BY window_start
),
candidates AS (
    SELECT * FROM wt WHERE n >= $min_count
),
whole_term AS (
    -- every term's count over the whole range, and the range's total beside it (one row
    -- per term: a semi join on the candidates' terms, repeated in every window, and a
    -- cross join with the total cost 22 of 26 CPU-s on 200k tweets)
    SELECT term,
           CAST(sum(n) AS DOUBLE)             AS bg_n,
           CAST(sum(sum(n)) OVER () AS DOUBLE) AS bg_tot
    FROM term_panes
    WHERE NOT $trailing
    GROUP BY term
),
window_end_of AS (
    SELECT window_start,
           window_start + arrow_cast($window, 'Interval(MonthDayNano)') AS window_end
    FROM wtot
    WHERE $trailing
),
-- trailing: a count over the panes in [window_end - $background, window_end) is a running
-- sum read at two marker rows, window_end and window_end - $background, each sorted before
-- a pane starting at its time (kind 0 < 1): the difference of the two. Linear in the panes,
-- where joining every candidate to its term's panes by range was quadratic in common terms.
term_marks AS (
    SELECT c.term, c.window_start, e.window_end AS at, 1.0 AS sign
    FROM candidates c JOIN window_end_of e ON e.window_start = c.window_start
    UNION ALL
    SELECT c.term, c.window_start, e.window_end - arrow_cast($background, 'Interval(MonthDayNano)') AS at, -1.0 AS sign
    FROM candidates c JOIN window_end_of e ON e.window_start = c.window_start
),
term_running AS (
    SELECT window_start, term, sign,
           sum(n) OVER (PARTITION BY term ORDER BY at, kind ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
    FROM (
        SELECT term, arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))') AS window_start, pane_start AS at, 1 AS kind, 0.0 AS sign,
               CAST(n AS DOUBLE) AS n
        FROM term_panes
        WHERE $trailing AND term IN (SELECT DISTINCT term FROM candidates)
        UNION ALL
        SELECT term, window_start, at, 0 AS kind, sign, 0.0 AS n FROM term_marks
    ) AS t
),
tot_running AS (
    SELECT window_start, sign,
           sum(n) OVER (ORDER BY at, kind ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
    FROM (
        SELECT arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))') AS window_start, pane_start AS at, 1 AS kind, 0.0 AS sign,
               CAST(sum(n) AS DOUBLE) AS n
        FROM term_panes WHERE $trailing GROUP BY pane_start
        UNION ALL
        SELECT window_start, window_end AS at, 0 AS kind, 1.0 AS sign, 0.0 AS n FROM window_end_of
        UNION ALL
        SELECT window_start, window_end - arrow_cast($background, 'Interval(MonthDayNano)') AS at, 0 AS kind,
               -1.0 AS sign, 0.0 AS n
        FROM window_end_of
    ) AS t
),
background AS (
    -- the whole range
    SELECT c.window_start, c.term, b.bg_n, b.bg_tot
    FROM candidates c JOIN whole_term b ON b.term = c.term
    WHERE NOT $trailing
    UNION ALL
    -- trailing
    SELECT r.window_start, r.term, r.bg_n, t.bg_tot
    FROM (SELECT window_start, term, sum(sign * cum) AS bg_n FROM term_running WHERE sign <> 0.0
          GROUP BY window_start, term) AS r
    JOIN (SELECT window_start, sum(sign * cum) AS bg_tot FROM tot_running WHERE sign <> 0.0
          GROUP BY window_start) AS t ON t.window_start = r.window_start
),
scored AS (
    SELECT
        c.window_start, c.term, c.n, c.n_scored, c.sum_score, c.n_negative,
        $alpha0 * b.bg_n / b.bg_tot AS a,
        CAST(c.n AS DOUBLE) AS yi, w.tot AS ni,
        b.bg_n - c.n AS yj, b.bg_tot - w.tot AS nj,
        CAST(c.n_negative AS DOUBLE) AS yn, w.tot_neg AS nn,
        CAST(c.n_scored - c.n_negative AS DOUBLE) AS yo, w.tot_other AS no
    FROM candidates c
    JOIN background b ON b.window_start = c.window_start AND b.term = c.term
    JOIN wtot w ON w.window_start = c.window_start
),
lifted AS (
    SELECT
        window_start, term, n, n_scored, sum_score, n_negative,
        (ln((yi + a) / nullif(ni + $alpha0 - yi - a, 0)) - ln((yj + a) / nullif(nj + $alpha0 - yj - a, 0)))
            / sqrt(1.0 / (yi + a) + 1.0 / (yj + a))                                         AS lift,
        (ln((yn + a) / nullif(nn + $alpha0 - yn - a, 0)) - ln((yo + a) / nullif(no + $alpha0 - yo - a, 0)))
            / sqrt(1.0 / (yn + a) + 1.0 / (yo + a))                                         AS neg_lift
    FROM scored
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY window_start ORDER BY lift DESC NULLS LAST, term) AS rank
    FROM lifted
)
SELECT
    window_start,
    arrow_cast(window_start + arrow_cast($window, 'Interval(MonthDayNano)'),
               'Timestamp(Microsecond, Some("UTC"))')                       AS window_end,
    term,
    CASE WHEN starts_with(term, '#') THEN 'hashtag'
         WHEN starts_with(term, '$') THEN 'cashtag'
         WHEN strpos(term, ' ') > 0 THEN 'bigram'
         ELSE 'word' END                                                    AS kind,
    n,
    CASE WHEN n_scored > 0 THEN sum_score / n_scored END                    AS avg_score,
    CASE WHEN n_scored > 0 THEN CAST(n_negative AS DOUBLE) / n_scored END   AS share_negative,
    lift,
    neg_lift,
    to_char(window_start, '%Y-%m-%d')                                       AS dt
FROM ranked
WHERE rank <= $top_k
ORDER BY window_start, lift DESC NULLS LAST, term
