-- sql/report_rejected.sql: records rejected by every run so far (the _rejected table).
SELECT count(*) AS n FROM rejected
