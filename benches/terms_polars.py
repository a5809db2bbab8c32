#!/usr/bin/env python3
"""The window_terms computation of sql/window_terms.sql in Polars, for benches/terms.sh.

Input, either
- `--input`: a Parquet file of scored tweets with their terms (created_at, sentiment_score,
  sentiment_label, terms: the list that sentiflow's terms() extracted): Polars is handed the
  extraction and computes the rest (panes, windows, background, lift, ranking); or
- `--from-text`: sentiflow's scored_tweets directory (Parquet, created_at, sentiment_score,
  sentiment_label, text): Polars does the whole job, the extraction too, with its own string
  functions, by the rules of udfs/src/terms.rs (one regex tokenizer; URLs and @mentions
  dropped; case-folded; hashtags, cashtags, words, bigrams of adjacent kept words; stopwords
  read from terms.rs; each term once per tweet, at most 48, at most 64 bytes). Not modelled:
  the 4,096-byte scan limit (generated texts are far shorter).
Output: window_terms rows (tumbling windows of --window-min minutes, the whole range as
background) as CSV: window_start (µs), term, n, lift, neg_lift.

    python benches/terms_polars.py (--input terms.parquet | --from-text DIR) --out polars.csv \
        [--top-k 10] [--min-count 3]
"""
import argparse
import os
import re

import polars as pl

TERMS_RS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "udfs", "src", "terms.rs")
# the extractor's source: its stopword lists and bounds are read from it, not restated here
TERMS_SRC = open(TERMS_RS, encoding="utf-8").read()


def rust_const(name):
    """A `pub const NAME: usize = N;` of udfs/src/terms.rs: the extractor's bounds, read from their one place."""
    m = re.search(rf"pub const {name}: usize = (\d+);", TERMS_SRC)
    assert m, f"{name} not found in terms.rs"
    return int(m.group(1))


MAX_TERMS, MAX_TERM_BYTES, MAX_CASHTAG = (rust_const(n) for n in ("MAX_TERMS_PER_TWEET", "MAX_TERM_BYTES",
                                                                 "MAX_CASHTAG_LETTERS"))
ALNUM = r"\p{Alphabetic}\p{N}"
# one token per match, in text order: a tag, a mention, a word (inner apostrophes), or any other
# character (a break); whitespace is skipped
TOKEN = rf"[#$][{ALNUM}_]*|@[{ALNUM}_]*|[{ALNUM}]+(?:['’][{ALNUM}]+)*|\S"
URL = r"(?i)https?://[^ \t\n\r\x0b\x0c]+"


def stopwords():
    """The shipped stopword lists, read from udfs/src/terms.rs so both sides drop the same words."""
    lists = re.findall(r'const (?:EN|ES|PT|DE|FR): &str = "(.*?)";', TERMS_SRC, re.S)
    assert len(lists) == 5, "stopword lists not found in terms.rs"
    return sorted({w for l in lists for w in l.replace("\\", " ").split()})


def terms_from_text(lf):
    """(created_at, sentiment_score, negative, term): each tweet's distinct terms, with list
    functions per tweet (only the terms are exploded, not the tokens)."""
    tok = pl.col("text").str.replace_all(URL, "http").str.extract_all(TOKEN) \
        .list.eval(pl.element().str.to_lowercase().str.replace_all("’", "'", literal=True))
    e = pl.element()
    first, body = e.str.head(1), e.str.slice(1)
    tag = ((first == "#") & body.str.contains(r"\p{Alphabetic}")) \
        | ((first == "$") & body.str.contains(rf"^[a-z]{{1,{MAX_CASHTAG}}}$"))
    word = (first.str.contains(rf"^[{ALNUM}]$") & (e != "http") & (e.str.len_chars() > 1)
            & e.str.contains(r"\p{Alphabetic}") & ~e.is_in(stopwords()))
    # aligned with the tokens: the term a token is (or null), and the bigram it ends (two kept
    # words, one token after the other: only spaces between)
    single = pl.col("tok").list.eval(pl.when(tag | word).then(e))
    pair = pl.col("tok").list.eval(pl.when(word & word.shift(1)).then(e.shift(1) + " " + e))
    # in the order the extractor keeps them (a word, then the bigram it ends); each term once,
    # at most MAX_TERM_BYTES long, the first MAX_TERMS of them
    n = pl.col("tok").list.len()
    i = pl.int_ranges(0, 2 * n)
    terms = (
        pl.concat_list(single, pair).list.gather(i // 2 + (i % 2) * n)
        .list.eval(e.filter(e.is_not_null() & (e.str.len_bytes() <= MAX_TERM_BYTES)))
        .list.unique(maintain_order=True).list.head(MAX_TERMS)
    )
    return (
        lf.with_columns(tok.alias("tok"))
        .select("created_at", "sentiment_score", "negative", terms.alias("term"))
        .explode("term")
        .drop_nulls("term")
    )


def fightin_words(yi, ni, yj, nj, a, a0):
    delta = ((yi + a) / (ni + a0 - yi - a)).log() - ((yj + a) / (nj + a0 - yj - a)).log()
    return delta / (1.0 / (yi + a) + 1.0 / (yj + a)).sqrt()


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="Parquet of scored tweets with sentiflow's terms")
    src.add_argument("--from-text", help="sentiflow's scored_tweets directory: Polars extracts the terms")
    ap.add_argument("--out", required=True)
    ap.add_argument("--window-min", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--alpha0", type=float, default=1000.0)
    a = ap.parse_args()
    neg = pl.when(pl.col("sentiment_label").is_not_null()).then(pl.col("sentiment_label") == "negative") \
        .otherwise(pl.col("sentiment_score") < 0).fill_null(False)
    if a.input:
        terms = (
            pl.scan_parquet(a.input)
            .select("created_at", "sentiment_score", neg.alias("negative"), pl.col("terms").alias("term"))
            .explode("term")
            .drop_nulls("term")
        )
    else:
        scored = pl.scan_parquet(os.path.join(a.from_text, "**", "*.parquet"), hive_partitioning=False) \
            .select("created_at", "sentiment_score", neg.alias("negative"), "text")
        terms = terms_from_text(scored)
    wt = (
        terms.select(
            pl.col("created_at").dt.truncate(f"{a.window_min}m").alias("window_start"),
            "sentiment_score", "negative", "term",
        )
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
