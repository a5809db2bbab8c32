-- sql/bench_scan.sql: the peer benchmark's scan task.
SELECT count(*) AS count, avg(score) AS avg FROM peer_tweets
