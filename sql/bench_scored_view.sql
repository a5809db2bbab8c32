-- sql/bench_scored_view.sql: the peer benchmark's data as scored_tweets.
--
-- ../shared/peers/ generates tweets with a `score` in [-10, 10] and no label;
-- this view maps them onto the columns window_source_aggs.sql reads, with the
-- peers' rule for a negative tweet (score < 0).
SELECT
    created_at,
    source,
    score AS sentiment_score,
    CASE WHEN score < 0 THEN 'negative'
         WHEN score > 0 THEN 'positive'
         ELSE 'neutral' END AS sentiment_label
FROM peer_tweets
