-- sql/report_drivers.sql: what drove one window: its top terms by lift (window_terms), and for
-- its top term the most negative scored tweets of the window containing it (terms(), the
-- extractor window_terms counts with).
-- Params: $start, $end (the window's bounds).
WITH top AS (
    SELECT term, kind, n, share_negative, lift, neg_lift,
           row_number() OVER (ORDER BY lift DESC NULLS LAST, term) AS rank
    FROM window_terms
    WHERE window_start = $start
),
first AS (SELECT term FROM top WHERE rank = 1),
tweets AS (
    SELECT s.sentiment_score, s.text, s.tweet_id,
           row_number() OVER (ORDER BY s.sentiment_score, s.tweet_id) AS rank
    FROM scored_tweets s CROSS JOIN first f
    WHERE s.created_at >= $start AND s.created_at < $end
      AND s.sentiment_score IS NOT NULL
      AND array_has(terms(s.text), f.term)
)
SELECT 'term' AS what, rank, term, kind, n, share_negative, lift, neg_lift,
       CAST(NULL AS DOUBLE) AS score, CAST(NULL AS VARCHAR) AS text
FROM top WHERE rank <= 5
UNION ALL
SELECT 'tweet' AS what, rank, NULL, NULL, NULL, NULL, NULL, NULL, sentiment_score, text
FROM tweets WHERE rank <= 3
ORDER BY what, rank
