#!/usr/bin/env bash
# CI smoke fuzzing: every target for FUZZ_SECONDS (default 30) seconds,
# starting from the checked-in seeds plus the checked-in crash inputs
# (artifacts/<target>/, regression inputs: they must no longer crash).
# The corpus is copied to a temporary directory first, so what a run
# finds never lands in fuzz/corpus/ (which stays small, in git).
# Fails if any target crashes, leaks past its limits or times out; on a
# crash the input is in fuzz/artifacts/<target>/.
#
#   bash fuzz/run-ci.sh            # from anywhere; needs rustup's nightly
set -euo pipefail

cd "$(dirname "$0")"
targets=(frame message record log tokens)
seconds="${FUZZ_SECONDS:-30}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi

start=$SECONDS
cargo +nightly fuzz build --sanitizer=none
echo "fuzz: built in $((SECONDS - start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t"
    cp -R "corpus/$t/." "$work/corpus/$t/"
    extra=()
    if [ -d "artifacts/$t" ] && [ -n "$(ls -A "artifacts/$t")" ]; then
        extra=("artifacts/$t")
    fi
    log="$work/$t.log"
    # -malloc_limit_mb: no single allocation may approach the limits the
    # decoders promise (16 MiB for a frame body); SECURITY.md section 5.
    if cargo +nightly fuzz run --sanitizer=none "$t" "$work/corpus/$t" "${extra[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=64 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
    fi
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    last="$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|NEW|REDUCE|pulse)' "$log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")"
    printf 'fuzz %-8s %-6s execs %s (%s/s) cov %s ft %s corpus %s peak_rss %s MB\n' "$t" "$status" \
        "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        "$(stat peak_rss_mb)"
    if [ "$status" != ok ]; then
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|Reproduce with' "$log" | head -20 || true
        tail -40 "$log"
    fi
done

echo "fuzz: done in $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
