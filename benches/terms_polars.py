#!/usr/bin/env python3
"""The window_terms computation of sql/window_terms.sql in Polars, for benches/terms.sh.

Input: a Parquet file of scored tweets with their terms (created_at, sentiment_score,
sentiment_label, terms: list of the terms that sentiflow's terms() extracted, so both sides
count the same terms). Output: window_terms rows (tumbling windows of --window-min minutes,
the whole range as background) as CSV: window_start (µs), term, n, lift, neg_lift.

    python benches/terms_polars.py --input terms.parquet --out polars.csv [--top-k 10] [--min-count 3]
"""
import argparse

import polars as pl


def fightin_words(yi, ni, yj, nj, a, a0):
    delta = ((yi + a) / (ni + a0 - yi - a)).log() - ((yj + a) / (nj + a0 - yj - a)).log()
    return delta / (1.0 / (yi + a) + 1.0 / (yj + a)).sqrt()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--window-min", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--alpha0", type=float, default=1000.0)
    a = ap.parse_args()
    neg = pl.when(pl.col("sentiment_label").is_not_null()).then(pl.col("sentiment_label") == "negative") \
        .otherwise(pl.col("sentiment_score") < 0).fill_null(False)
    wt = (
        pl.scan_parquet(a.input)
        .select(
            pl.col("created_at").dt.truncate(f"{a.window_min}m").alias("window_start"),
            pl.col("sentiment_score"),
            neg.alias("negative"),
            pl.col("terms"),
        )
        .explode("terms")
        .drop_nulls("terms")
        .rename({"terms": "term"})
        .group_by("window_start", "term")
        .agg(
            pl.len().alias("n"),
            pl.col("sentiment_score").count().alias("n_scored"),
            pl.col("negative").sum().alias("n_negative"),
        )
        .collect()
    )
    wtot = wt.group_by("window_start").agg(
        pl.col("n").sum().cast(pl.Float64).alias("tot"),
        pl.col("n_negative").sum().cast(pl.Float64).alias("tot_neg"),
        (pl.col("n_scored") - pl.col("n_negative")).sum().cast(pl.Float64).alias("tot_other"),
    )
    bg_tot = float(wt["n"].sum())
    cand = wt.filter(pl.col("n") >= a.min_count)
    bg = wt.filter(pl.col("term").is_in(cand["term"].unique().implode())).group_by("term") \
        .agg(pl.col("n").sum().cast(pl.Float64).alias("bg_n"))
    c = cand.join(bg, on="term").join(wtot, on="window_start").with_columns(
        (a.alpha0 * pl.col("bg_n") / bg_tot).alias("a"),
        pl.col("n").cast(pl.Float64).alias("yi"),
    )
    out = (
        c.with_columns(
            fightin_words(pl.col("yi"), pl.col("tot"), pl.col("bg_n") - pl.col("yi"), bg_tot - pl.col("tot"),
                          pl.col("a"), a.alpha0).alias("lift"),
            fightin_words(pl.col("n_negative").cast(pl.Float64), pl.col("tot_neg"),
                          (pl.col("n_scored") - pl.col("n_negative")).cast(pl.Float64), pl.col("tot_other"),
                          pl.col("a"), a.alpha0).alias("neg_lift"),
        )
        .sort(["window_start", "lift", "term"], descending=[False, True, False])
        .group_by("window_start", maintain_order=True)
        .head(a.top_k)
        .select(pl.col("window_start").dt.epoch("us"), "term", "n", "lift", "neg_lift")
    )
    out.write_csv(a.out)


if __name__ == "__main__":
    main()
