-- sql/window_terms.sql: what drove each window — its top terms by lift.
--
-- Reads term_panes (term_panes.sql: counts per pane and term). Panes roll up
-- into windows as in window_source_aggs.sql (a pane belongs to the windows
-- starting $lookback before it … at it, $slide apart).
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
-- Params: $slide, $lookback, $window, $background (intervals); $from, $to
-- (windows starting in [$from, $to)); $trailing (boolean); $alpha0 (double);
-- $top_k, $min_count (integers).
WITH window_panes AS (
    SELECT
        arrow_cast(unnest(generate_series(
            pane_start - arrow_cast($lookback, 'Interval(MonthDayNano)'),
            pane_start,
            arrow_cast($slide, 'Interval(MonthDayNano)'))), 'Timestamp(Microsecond, Some("UTC"))') AS window_start,
        term, n, n_scored, sum_score, n_negative
    FROM term_panes
),
wt AS (
    SELECT window_start, term,
           sum(n) AS n, sum(n_scored) AS n_scored, sum(sum_score) AS sum_score, sum(n_negative) AS n_negative
    FROM window_panes
    WHERE window_start >= $from AND window_start < $to
    GROUP BY window_start, term
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
    SELECT term, CAST(sum(n) AS DOUBLE) AS bg_n FROM term_panes
    WHERE NOT $trailing AND term IN (SELECT term FROM candidates)
    GROUP BY term
),
whole_tot AS (
    SELECT CAST(sum(n) AS DOUBLE) AS bg_tot FROM term_panes WHERE NOT $trailing
),
pane_tot AS (
    SELECT pane_start, sum(n) AS tot FROM term_panes WHERE $trailing GROUP BY pane_start
),
window_end_of AS (
    SELECT window_start,
           window_start + arrow_cast($window, 'Interval(MonthDayNano)') AS window_end
    FROM wtot
),
background AS (
    -- the whole range
    SELECT c.window_start, c.term, b.bg_n, t.bg_tot
    FROM candidates c JOIN whole_term b ON b.term = c.term CROSS JOIN whole_tot t
    WHERE NOT $trailing
    UNION ALL
    -- trailing: the panes in [window_end - $background, window_end)
    SELECT c.window_start, c.term, CAST(sum(p.n) AS DOUBLE) AS bg_n, max(pt.tot) AS bg_tot
    FROM candidates c
    JOIN window_end_of e ON e.window_start = c.window_start
    JOIN term_panes p ON p.term = c.term
        AND p.pane_start >= e.window_end - arrow_cast($background, 'Interval(MonthDayNano)')
        AND p.pane_start < e.window_end
    JOIN (
        SELECT e2.window_start, CAST(sum(q.tot) AS DOUBLE) AS tot
        FROM window_end_of e2 JOIN pane_tot q
            ON q.pane_start >= e2.window_end - arrow_cast($background, 'Interval(MonthDayNano)')
            AND q.pane_start < e2.window_end
        GROUP BY e2.window_start
    ) pt ON pt.window_start = c.window_start
    WHERE $trailing
    GROUP BY c.window_start, c.term
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
