#!/usr/bin/env bash
# `score` then `aggregate` of the same generated input: in one process, with `--cluster standalone`
# (scheduler and executor in the client's process), and on a Ballista cluster of processes on 127.0.0.1
# (one scheduler, 1 or 2 executors sharing the machine's cores). Prints, per mode: wall seconds of each job,
# CPU-s of every process together (client, scheduler, executors) and as a ratio to one process, peak RSS
# (client; largest executor), the per-job overhead (extra wall per cluster job: one per input file and the
# scorer check), and where score's time goes (read+validate / stage / query / write, from its -v log line).
#   bash benches/cluster.sh [--rows 20000] [--hours 12] [--scorer onnx|lexicon] [--executors "1 2"] [--binary PATH]
# Needs a build with the cluster feature: cargo build --features cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=20000
HOURS=12
SCORER=onnx
EXECUTORS="1 2"
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --hours) HOURS=$2; shift 2 ;;
    --scorer) SCORER=$2; shift 2 ;;
    --executors) EXECUTORS=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --features cluster first" >&2; exit 1; }
"$BIN" cluster --help >/dev/null 2>&1 || { echo "$BIN was built without the cluster feature: cargo build --features cluster" >&2; exit 1; }
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh 2>/dev/null
set -euo pipefail
OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT
export SENTIFLOW_NO_PROGRESS=1
CORES=$(nproc)
"$BIN" generate --rows "$ROWS" --seed 7 --start 2025-03-01T00:00:00Z --span "${HOURS}h" --to "$OUT/in" >/dev/null
FILES=$(find "$OUT/in" -type f | wc -l)
SC=(--scorer "$SCORER" --onnx-threads 1)

# CPU seconds (user+sys) of a process so far, and its peak RSS in MiB
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
hwm_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# one job: "$@" under /usr/bin/time; prints "wall cpu rss_mib"
timed() {
  /usr/bin/time -f '%e %U %S %M' -o "$OUT/time" "$@" >"$OUT/job.out" 2>"$OUT/job.err" \
    || { cat "$OUT/job.err" >&2; exit 1; }
  awk '{ printf "%s %.2f %.0f\n", $1, $2 + $3, $4 / 1024 }' "$OUT/time"
}

echo "# cluster bench, $(date -u +%Y-%m-%dT%H:%MZ), $CORES cores, $ROWS rows in $FILES files, scorer $SCORER (1 ONNX thread per session), binary $BIN"
printf '%-22s | %8s %8s | %8s %6s | %10s %10s | %9s | %s\n' mode "score s" "agg s" "CPU-s" "xCPU" \
  "RSS client" "RSS exec" "s/job" "score phases: read / stage / query / write s"
BASE_CPU= BASE_WALL=
for mode in single standalone $(for n in $EXECUTORS; do echo "executors-$n"; done); do
  root="$OUT/$mode"
  cluster=() cluster_pids=()
  case $mode in
    standalone) cluster=(--cluster standalone) ;;
    executors-*)
      n=${mode#executors-}
      sp=$(free_port)
      "$BIN" cluster scheduler --bind "127.0.0.1:$sp" "${SC[@]}" >"$OUT/$mode.scheduler.log" 2>&1 &
      PIDS+=($!) cluster_pids+=($!)
      until (exec 3<>"/dev/tcp/127.0.0.1/$sp") 2>/dev/null; do sleep 0.1; done
      for k in $(seq 1 "$n"); do
        fp=$(free_port) gp=$(free_port)
        # the machine's cores split between the executors
        "$BIN" cluster executor --scheduler "127.0.0.1:$sp" --bind "127.0.0.1:$fp" --grpc-port "$gp" \
          --concurrency $(( CORES / n > 0 ? CORES / n : 1 )) "${SC[@]}" >"$OUT/$mode.executor$k.log" 2>&1 &
        PIDS+=($!) cluster_pids+=($!)
        until (exec 3<>"/dev/tcp/127.0.0.1/$gp") 2>/dev/null; do sleep 0.1; done
      done
      sleep 1
      cluster=(--cluster "df://127.0.0.1:$sp") ;;
  esac
  before=0
  for p in "${cluster_pids[@]}"; do before=$(echo "$before + $(cpu_s "$p")" | bc); done
  read -r sw sc srss < <(timed "$BIN" -v score --input "$OUT/in" --out "$root" "${SC[@]}" "${cluster[@]}")
  phases=$(grep -o 'read_s=[0-9.]* stage_s=[0-9.]* query_s=[0-9.]* write_s=[0-9.]*' "$OUT/job.err" \
    | awk -F'[= ]' '{ printf "%.1f / %.1f / %.1f / %.1f", $2, $4, $6, $8 }')
  read -r aw ac arss < <(timed "$BIN" aggregate --out "$root" --window 10m --slide 5m "${cluster[@]}")
  after=0 exec_rss=-
  for p in "${cluster_pids[@]}"; do after=$(echo "$after + $(cpu_s "$p")" | bc); done
  if [ ${#cluster_pids[@]} -gt 1 ]; then
    exec_rss=0
    for p in "${cluster_pids[@]:1}"; do r=$(hwm_mib "$p"); [ "$r" -gt "$exec_rss" ] && exec_rss=$r; done
  fi
  for p in "${cluster_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  cpu=$(echo "$sc + $ac + $after - $before" | bc)
  wall=$(echo "$sw + $aw" | bc)
  rss=$(( srss > arss ? srss : arss ))
  if [ -z "$BASE_CPU" ]; then BASE_CPU=$cpu BASE_WALL=$wall; fi
  ratio=$(echo "scale=2; $cpu / $BASE_CPU" | bc)
  # jobs on the cluster: one per input file and the scorer check (score), one (aggregate)
  per_job=$( [ "$mode" = single ] && echo - || echo "scale=3; ($wall - $BASE_WALL) / ($FILES + 2)" | bc)
  printf '%-22s | %8s %8s | %8s %6s | %10s %10s | %9s | %s\n' "$mode" "$sw" "$aw" "$cpu" "$ratio" \
    "$rss MiB" "$( [ "$exec_rss" = - ] && echo - || echo "$exec_rss MiB")" "$per_job" "$phases"
  # the same rows as one process
  if [ "$mode" != single ]; then
    q="SELECT * EXCLUDE (scored_at) FROM scored_tweets ORDER BY tweet_id"
    cmp -s <("$BIN" sql --data "$OUT/single" --format csv -c "$q") <("$BIN" sql --data "$root" --format csv -c "$q") \
      || echo "  !! $mode: scored rows differ from one process" >&2
  fi
done
