#!/usr/bin/env bash
# Coverage-guided fuzzing of the record parsers (NDJSON, CSV/TSV, Parquet row validation), the time
# formats and the SQL statement splitter, with cargo fuzz (libFuzzer) on the stable toolchain.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # default: 60 s each, every target
#
# Installs cargo-fuzz from crates.io when missing. Seeds come from fuzz/corpus/<target>/ (the cases of
# issue 16; `cargo test` replays them through the same properties, jobs/src/fuzzcheck.rs); new inputs
# libFuzzer finds go to fuzz/work/<target>/ (ignored by git), a crash to fuzz/artifacts/<target>/.
# Not part of scripts/test.sh: the instrumented build of the stack takes minutes of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse_record_file parse_timestamp split_statements)
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
cd fuzz
# -s none: no sanitizer, so the stable toolchain builds it (the Rust code is memory-safe; panics and
# the properties' assertions are what is found); cargo fuzz's default build keeps debug assertions
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${secs}s" >&2
    cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::|#[0-9]+ +DONE|Done|==|INFO: (Loaded|seed)|SUMMARY|thread)" || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "fuzz: $t found a failing input: fuzz/artifacts/$t/ (replay: cargo fuzz run -s none $t FILE)" >&2
        exit 1
    fi
done
echo "fuzz: no failing input in ${#targets[@]} target(s), ${secs}s each" >&2
