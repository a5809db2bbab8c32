#!/usr/bin/env python3
"""Checks the Athena queries of sql/athena/ without Athena:

1. each parses as Trino SQL (Athena engine v3) with sqlglot;
2. the same query, transpiled by sqlglot, runs on two engines over a sentiflow data root:
   DuckDB (as dialect duckdb) and DataFusion (as dialect postgres, through `sentiflow sql`);
3. both return the same rows (floats to 9 significant digits, timestamps as instants).

    python infra/check/athena_sql.py --data <root written by `sentiflow run`> --sentiflow <binary>

The data root needs windows/, windows_by_source/, window_terms/ and scored/; an alerts/ fixture is written if
absent (streaming mode, which fires alerts, is not built yet). Execution parameters (`?`) get
the values below, quoted as SQL literals, for the check only.
"""
import argparse
import datetime as dt
import glob
import json
import math
import os
import subprocess
import sys

import duckdb
import sqlglot

PARAMS = {
    "sentiment_over_time": ["2025-02-10", "2025-02-10"],
    "sentiment_by_source": ["2025-02-10", "2025-02-11"],
    "most_negative_tweets": ["2025-02-10", "2025-02-10 12:00:00", "2025-02-10 18:00:00"],
    "alert_history": ["2025-02-10", "2025-02-10"],
    "top_negative_drivers": ["2025-02-09", "2025-02-09 18:00:00", "2025-02-10 18:00:00"],
}
TABLES = {"windows": "windows", "windows_by_source": "windows_by_source", "window_terms": "window_terms",
          "scored_tweets": "scored", "alerts": "alerts"}


def bind(sql, values):
    parts = sql.split("?")
    if len(parts) != len(values) + 1:
        sys.exit(f"athena_sql: {len(parts) - 1} parameters, {len(values)} values")
    out = parts[0]
    for v, p in zip(values, parts[1:]):
        out += "'" + v.replace("'", "''") + "'" + p
    return out


def norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        return 0.0 if f == 0 else float(f"{f:.9g}") if math.isfinite(f) else f
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.timestamp()
    if isinstance(v, str):
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%fZ"):
            try:
                t = dt.datetime.strptime(v, fmt)
                return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()
            except ValueError:
                pass
    return v


def write_alerts_fixture(root):
    d = os.path.join(root, "alerts", "dt=2025-02-10")
    if glob.glob(os.path.join(root, "alerts", "**", "*.parquet"), recursive=True):
        return
    os.makedirs(d, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""COPY (
        SELECT window_start, window_end, rule, CAST(source AS VARCHAR) AS source, metric,
               CAST(value AS DOUBLE) AS value, CAST(threshold AS DOUBLE) AS threshold, message, fired_at
        FROM (VALUES
          (TIMESTAMPTZ '2025-02-10 09:00:00+00', TIMESTAMPTZ '2025-02-10 09:05:00+00', 'negative_share_high', NULL, 'share_negative', 0.71, 0.6, '71 % negative in 14 tweets', TIMESTAMPTZ '2025-02-10 09:05:31+00'),
          (TIMESTAMPTZ '2025-02-10 14:00:00+00', TIMESTAMPTZ '2025-02-10 14:05:00+00', 'negative_share_high', 'reddit', 'share_negative', 0.8, 0.6, '80 % negative in 10 reddit posts', TIMESTAMPTZ '2025-02-10 14:05:40+00'),
          (TIMESTAMPTZ '2025-02-10 16:00:00+00', TIMESTAMPTZ '2025-02-10 16:05:00+00', 'avg_drop', NULL, 'avg_score', -0.42, -0.3, 'mean fell 3.1 sd below the trailing hour', TIMESTAMPTZ '2025-02-10 16:05:12+00')
        ) AS t(window_start, window_end, rule, source, metric, value, threshold, message, fired_at)
    ) TO '{d}/fixture.parquet' (FORMAT parquet)""")


def run_duckdb(root, sql):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, d in TABLES.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root}/{d}/**/*.parquet', "
                    "hive_partitioning = true, hive_types_autocast = false)")
    cur = con.execute(sqlglot.transpile(sql, read="trino", write="duckdb", comments=False)[0])
    return [tuple(norm(v) for v in row) for row in cur.fetchall()]


def run_datafusion(binary, root, sql):
    q = sqlglot.transpile(sql, read="trino", write="postgres", comments=False)[0]
    out = subprocess.run([binary, "sql", "--scorer", "lexicon", "--data", root, "--format", "json", "-c", q],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"DataFusion failed on:\n{q}\n{out.stderr}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    return q, [tuple(norm(v) for v in r.values()) for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--sentiflow", required=True)
    a = ap.parse_args()
    root = os.path.abspath(a.data)
    write_alerts_fixture(root)
    files = sorted(f for f in glob.glob(os.path.join(os.path.dirname(__file__), "../../sql/athena/*.sql")) if not f.endswith("ddl.sql"))
    if sorted(os.path.basename(f)[:-4] for f in files) != sorted(PARAMS):
        sys.exit(f"athena_sql: queries {files} and parameter sets {sorted(PARAMS)} differ")
    failed = 0
    for f in files:
        name = os.path.basename(f)[:-4]
        text = open(f).read()
        sqlglot.parse_one(text, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
        sql = bind(text, PARAMS[name])
        duck = run_duckdb(root, sql)
        q, fusion = run_datafusion(a.sentiflow, root, sql)
        if not duck:
            print(f"athena_sql: {name}: no rows on the sample data; the check would prove nothing")
            failed += 1
        elif duck != fusion:
            failed += 1
            print(f"athena_sql: {name}: DuckDB and DataFusion differ\n  duckdb:     {duck[:3]}\n  datafusion: {fusion[:3]}\n  sql: {q}")
        else:
            print(f"athena_sql: {name}: parses as Trino; DuckDB and DataFusion agree on {len(duck)} rows")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
