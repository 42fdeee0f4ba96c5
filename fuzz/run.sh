#!/bin/sh
# Runs every cargo-fuzz target (or those named as arguments) for FUZZ_SECONDS each (default 25)
# on nightly, starting from the committed seeds and crash reproducers. New inputs go to a
# scratch corpus under fuzz/work/, never into the committed one. On a crash it prints the
# reproducer's path, its bytes in base64 and the command that replays it, and exits non-zero.
# Called by .ci/run; needs cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
set -eu
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-25}
targets=${*:-$(cargo +nightly fuzz list)}
# Built once for all targets, without the sanitizer rebuild of std.
cargo +nightly fuzz build
status=0
for target in $targets; do
    work=work/$target
    artifacts=artifacts/$target
    rm -rf "$work" "$artifacts"
    mkdir -p "$work" "$artifacts" "regressions/$target"
    echo "== fuzz $target: ${seconds}s"
    # Seeds and regressions are read-only inputs; only $work grows.
    if ! cargo +nightly fuzz run "$target" "$work" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        2>"$work.log"; then
        status=1
        grep -E '^(==[0-9]+==|thread|panicked|SUMMARY)' "$work.log" | head -20 || true
        tail -n 40 "$work.log"
        for crash in "$artifacts"/*; do
            [ -f "$crash" ] || continue
            echo "fuzz $target: reproducer fuzz/$crash (commit it under fuzz/regressions/$target/)"
            echo "base64: $(base64 -w0 "$crash")"
            echo "replay: cargo +nightly fuzz run $target fuzz/$crash"
        done
        continue
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work.log" || true
    grep -E '^#[0-9]+' "$work.log" | tail -n 1
done
exit $status
