-- sql/term_panes.sql: per-(pane, term) counts, the partials of window_terms.
--
-- Every scored row's terms (`terms(text)`: hashtags, cashtags, words and
-- bigrams, each once per tweet; see udfs/src/terms.rs) are counted in panes
-- $slide wide, aligned to $origin, the panes window_source_aggs.sql uses.
-- The columns add up, so panes roll up into windows, into a background, and
-- the stream's per-shard micro-batch partials merge by summing.
--
--   n           tweets of the pane containing the term (scored or not)
--   n_scored    of those, tweets with a score
--   sum_score   the sum of their scores
--   n_negative  of those, tweets labelled negative (by the sign for data
--               scored elsewhere, as window_source_aggs.sql counts them)
--
-- Params: $slide (interval); $origin (timestamp); rows with created_at in
-- [$rows_from, $rows_to).
WITH tweet_terms AS (
    SELECT
        date_bin(arrow_cast($slide, 'Interval(MonthDayNano)'),
                 created_at,
                 arrow_cast($origin, 'Timestamp(Microsecond, Some("UTC"))')) AS pane_start,
        sentiment_score,
        coalesce(sentiment_label = 'negative', sentiment_score < 0)      AS negative,
        unnest(terms(text))                                              AS term
    FROM scored_tweets
    WHERE created_at >= $rows_from AND created_at < $rows_to
)
SELECT
    arrow_cast(pane_start, 'Timestamp(Microsecond, Some("UTC"))') AS pane_start,
    arrow_cast(term, 'Utf8')                   AS term,
    count(*)                                   AS n,
    count(sentiment_score)                     AS n_scored,
    sum(sentiment_score)                       AS sum_score,
    count(*) FILTER (WHERE negative)           AS n_negative
FROM tweet_terms
GROUP BY pane_start, term
