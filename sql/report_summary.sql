-- sql/report_summary.sql: totals of the scored tweets in the report's period.
-- Params: $from, $to (timestamps): tweets created in [$from, $to); $language_prefix (text).
-- scorers: each scorer with the rows it scored (`--fallback` runs have two).
WITH by_scorer AS (
    SELECT scorer, count(sentiment_score) AS n
    FROM scored_tweets
    WHERE created_at >= $from AND created_at < $to
    GROUP BY scorer
)
SELECT
    count(*)                                                AS n_rows,
    count(sentiment_score)                                  AS n_scored,
    count(*) - count(sentiment_score)                       AS n_unscorable,
    -- $language_prefix: the prefix of every language reason (sentiflow_udfs::text::LANGUAGE_REASON_PREFIX)
    count(*) FILTER (WHERE starts_with(score_error, $language_prefix)) AS n_other_language,
    min(created_at)                                         AS first_at,
    max(created_at)                                         AS last_at,
    avg(sentiment_score)                                    AS avg_score,
    count(*) FILTER (WHERE sentiment_label = 'negative')    AS n_negative,
    count(*) FILTER (WHERE sentiment_label = 'neutral')     AS n_neutral,
    count(*) FILTER (WHERE sentiment_label = 'positive')    AS n_positive,
    (SELECT string_agg(concat(scorer, ' (', n, ' scored)'), ', ' ORDER BY scorer) FROM by_scorer) AS scorers,
    count(*) FILTER (WHERE fallback_reason IS NOT NULL)     AS n_fallback,
    count(DISTINCT source)                                  AS n_sources
FROM scored_tweets
WHERE created_at >= $from AND created_at < $to
