-- sql/bench_scored_view.sql: the peer benchmark's data as scored_tweets.
--
-- ../shared/peers/ generates tweets with a `score` in [-10, 10] and no label.
-- The view only maps columns: with no label, window_source_aggs.sql counts a
-- score as negative when it is below zero, the peers' rule; no row went to a
-- fallback scorer.
SELECT
    created_at,
    source,
    score                    AS sentiment_score,
    CAST(NULL AS VARCHAR)    AS sentiment_label,
    CAST(NULL AS VARCHAR)    AS fallback_reason
FROM peer_tweets
