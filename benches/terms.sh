#!/usr/bin/env bash
# What window_terms costs: `aggregate` with terms (--top-terms 10) against without (--top-terms 0) on
# generated tweets (the sample's generator, 7 days, lexicon-scored), the same computation in Polars
# (benches/terms_polars.py) checked equal row for row, and the terms' share of the ONNX `score` step's
# CPU-s on the same rows (ONNX scored on a sample, scaled). Polars runs twice:
#   "Polars": handed the terms sentiflow's terms() extracted, it computes the rest (panes, windows,
#             background, lift, ranking); "lift/P" compares that with sentiflow's same part;
#   "P+text": the whole job from the scored tweets' texts, its own extraction (Polars string functions,
#             the rules of udfs/src/terms.rs); "xP+text" compares sentiflow's whole terms cost with it,
#             "xPolars" with the first (which did not extract).
# Prints CPU-s (user+sys) and peak RSS side by side, one line per size; the terms' CPU-s split into the
# extraction (terms() over every text) and the rest.
#   bash benches/terms.sh [--rows "1000000 10000000"] [--binary PATH] [--onnx-sample 20000]
# Default binary: a release build (cargo build --release); Polars from $SENTIFLOW_TOOLS/peers-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="1000000 10000000"
ONNX_SAMPLE=20000
BIN=
while [ $# -gt 0 ]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    --onnx-sample) ONNX_SAMPLE=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  cargo build --release --bin sentiflow
  BIN=${CARGO_TARGET_DIR:-target}/release/sentiflow
fi
VENV=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}/peers-venv
if ! "$VENV/bin/python" -c 'import polars' 2>/dev/null; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q polars pyarrow
fi
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh 2>/dev/null
set -euo pipefail
export SENTIFLOW_NO_PROGRESS=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# "$@" under /usr/bin/time: prints "cpu_s rss_mib"
timed() {
  /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" >"$WORK/job.out" 2>"$WORK/job.err" \
    || { cat "$WORK/job.err" >&2; exit 1; }
  awk '{ printf "%.2f %.0f\n", $1 + $2, $3 / 1024 }' "$WORK/time"
}

# ONNX score CPU-s per row, on a sample of the same generator
"$BIN" generate --rows "$ONNX_SAMPLE" --seed 11 --start 2025-03-01T00:00:00Z --span 7d --format parquet --to "$WORK/onnx-in" >/dev/null
read -r onnx_cpu _ < <(timed "$BIN" score --scorer onnx --input "$WORK/onnx-in" --out "$WORK/onnx-out")
onnx_per_row=$(awk -v c="$onnx_cpu" -v n="$ONNX_SAMPLE" 'BEGIN { printf "%.9f", c / n }')

echo "# window_terms bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, binary $BIN, Polars $("$VENV/bin/python" -c 'import polars; print(polars.__version__)')"
echo "# ONNX score: $onnx_cpu CPU-s on $ONNX_SAMPLE rows (scaled to each size below)"
# equal OURS.csv THEIRS.csv: "k/n" rows of ours equal to theirs (n, lift and neg_lift to 1e-9)
equal() {
  "$VENV/bin/python" - "$1" "$2" <<'PY'
import csv, math, sys
def rows(p):
    with open(p) as f:
        return {(r["window_start"], r["term"]): r for r in csv.DictReader(f)}
a, b = rows(sys.argv[1]), rows(sys.argv[2])
bad = [k for k in a.keys() | b.keys() if k not in a or k not in b or a[k]["n"] != b[k]["n"]
       or any(not math.isclose(float(a[k][c]), float(b[k][c]), rel_tol=1e-9, abs_tol=1e-9) for c in ("lift", "neg_lift"))]
print(f"{len(a) - len([k for k in bad if k in a])}/{len(a)}" + (f" DIFFER e.g. {sorted(bad)[:2]}" if bad else ""))
PY
}
printf '%10s | %9s %9s %9s %8s %8s | %8s %8s | %9s %8s | %7s %7s | %9s %8s %8s | %10s %6s | %s\n' rows "agg CPU-s" "+terms" "terms" \
  "extract" "lift" "RSS MiB" "+terms" "Polars" "RSS MiB" "xPolars" "lift/P" "P+text" "RSS MiB" "xP+text" "ONNX CPU-s" share \
  "equal rows (Polars, P+text)"
for n in $ROWS; do
  root="$WORK/r$n"
  "$BIN" generate --rows "$n" --seed 11 --start 2025-03-01T00:00:00Z --span 7d --format parquet --to "$root/raw" >/dev/null
  "$BIN" score --scorer lexicon --input "$root/raw" --out "$root" >/dev/null
  read -r c0 r0 < <(timed "$BIN" aggregate --out "$root" --top-terms 0)
  read -r c1 r1 < <(timed "$BIN" aggregate --out "$root" --top-terms 10)
  # of the terms' cost, the extraction (terms() over every text), which Polars is handed for free:
  # a scan with terms() less the same scan without
  read -r cx _ < <(timed "$BIN" sql --data "$root" -c "SELECT count(*) FROM (SELECT created_at, unnest(terms(text)) AS t FROM scored_tweets)")
  read -r cs _ < <(timed "$BIN" sql --data "$root" -c "SELECT count(*) FROM (SELECT created_at, text FROM scored_tweets WHERE text IS NOT NULL)")
  # the terms sentiflow extracted, for Polars (not timed: Polars gets them for free)
  "$BIN" sql --data "$root" --allow-write -c "COPY (SELECT created_at, sentiment_score, sentiment_label, terms(text) AS terms FROM scored_tweets) TO '$WORK/terms-$n.parquet' STORED AS PARQUET" >/dev/null
  read -r cp rp < <(timed "$VENV/bin/python" benches/terms_polars.py --input "$WORK/terms-$n.parquet" --out "$WORK/polars-$n.csv")
  read -r cq rq < <(timed "$VENV/bin/python" benches/terms_polars.py --from-text "$root/scored" --out "$WORK/polars-text-$n.csv")
  "$BIN" sql --data "$root" --format csv -c "SELECT CAST(arrow_cast(window_start, 'Timestamp(Microsecond, None)') AS BIGINT) AS window_start, term, n, lift, neg_lift FROM window_terms" >"$WORK/ours-$n.csv"
  equal="$(equal "$WORK/ours-$n.csv" "$WORK/polars-$n.csv"), $(equal "$WORK/ours-$n.csv" "$WORK/polars-text-$n.csv")"
  terms=$(awk -v a="$c1" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
  extract=$(awk -v a="$cx" -v b="$cs" 'BEGIN { printf "%.2f", a - b }')
  lift=$(awk -v a="$terms" -v b="$extract" 'BEGIN { printf "%.2f", a - b }')
  onnx=$(awk -v p="$onnx_per_row" -v n="$n" 'BEGIN { printf "%.0f", p * n }')
  printf '%10s | %9s %9s %9s %8s %8s | %8s %8s | %9s %8s | %7s %7s | %9s %8s %8s | %10s %6s | %s\n' "$n" "$c0" "$c1" "$terms" "$extract" "$lift" "$r0" "$r1" "$cp" "$rp" \
    "$(awk -v a="$terms" -v b="$cp" 'BEGIN { printf "%.2f", a / b }')" "$(awk -v a="$lift" -v b="$cp" 'BEGIN { printf "%.2f", a / b }')" \
    "$cq" "$rq" "$(awk -v a="$terms" -v b="$cq" 'BEGIN { printf "%.2f", a / b }')" "$onnx" \
    "$(awk -v a="$terms" -v b="$onnx" 'BEGIN { printf "%.2f%%", 100 * a / b }')" "$equal"
  rm -rf "$root"
done
