-- sql/score.sql: score raw tweets.
--
-- Reads table raw_tweets (the raw schema). score_sentiment(text, lang) is the
-- scorer the job selected (--scorer, and --fallback); it returns
-- STRUCT<score, label, error, scorer, fallback_reason>: an unscorable text gets
-- a NULL score and label and an error reason (among them a language the model
-- does not read: `lang`, else detected); its `scorer` is NULL on the selected
-- scorer's rows ($scorer names them) and the fallback's id on the rows the
-- fallback answered (--fallback llm: the rows the model refused, whose
-- fallback_reason is the model's refusal).
-- dt/hour are the Hive partition keys, from the event time (created_at, UTC).
--
-- Params: $scorer (model/version, text), $scored_at (timestamp, UTC).
SELECT
    tweet_id,
    created_at,
    text,
    source,
    user_id,
    lang,
    ingested_at,
    truth_label,
    get_field(s, 'score')                                          AS sentiment_score,
    get_field(s, 'label')                                          AS sentiment_label,
    coalesce(get_field(s, 'scorer'), arrow_cast($scorer, 'Utf8'))  AS scorer,
    arrow_cast($scored_at, 'Timestamp(Microsecond, Some("UTC"))')  AS scored_at,
    get_field(s, 'error')                                          AS score_error,
    get_field(s, 'fallback_reason')                                AS fallback_reason,
    to_char(created_at, '%Y-%m-%d')                                AS dt,
    to_char(created_at, '%H')                                      AS hour
FROM (
    SELECT *, score_sentiment(text, lang) AS s
    FROM raw_tweets
) AS t
