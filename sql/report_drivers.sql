-- sql/report_drivers.sql: what drove each window the report explains (table report_windows:
-- window_start, window_end), in one scan: a window's top terms by lift (window_terms), and for
-- its top term the most negative scored tweets of the window containing it (terms(), the
-- extractor window_terms counts with).
WITH ranked AS (
    SELECT t.window_start, t.term, t.kind, t.n, t.share_negative, t.lift, t.neg_lift,
           row_number() OVER (PARTITION BY t.window_start ORDER BY t.lift DESC NULLS LAST, t.term) AS rank
    FROM window_terms t JOIN report_windows w ON t.window_start = w.window_start
),
first AS (
    SELECT w.window_start, w.window_end, ranked.term
    FROM ranked JOIN report_windows w ON ranked.window_start = w.window_start
    WHERE ranked.rank = 1
),
tweets AS (
    SELECT f.window_start, s.sentiment_score, s.text,
           row_number() OVER (PARTITION BY f.window_start ORDER BY s.sentiment_score, s.tweet_id) AS rank
    FROM scored_tweets s JOIN first f
      ON s.created_at >= f.window_start AND s.created_at < f.window_end
    WHERE s.sentiment_score IS NOT NULL
      AND array_has(terms(s.text), f.term)
)
SELECT window_start, 'term' AS what, rank, term, kind, n, share_negative, lift, neg_lift,
       CAST(NULL AS DOUBLE) AS score, CAST(NULL AS VARCHAR) AS text
FROM ranked WHERE rank <= 5
UNION ALL
SELECT window_start, 'tweet' AS what, rank, NULL, NULL, NULL, NULL, NULL, NULL, sentiment_score, text
FROM tweets WHERE rank <= 3
ORDER BY window_start, what, rank
