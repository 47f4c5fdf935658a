#!/usr/bin/env bash
# Builds every fuzz target (fuzz/, cargo-fuzz and libFuzzer) and runs each
# one for a bounded time, one after the other; fails on the first crash.
#
#   scripts/fuzz.sh [SECONDS]    # per target; 20 by default (CI)
#
# Environment:
#   FUZZ_TARGETS    targets to run (default: all, from `cargo fuzz list`)
#   FUZZ_PROFILE    dev (default: quick to build, for CI) or release (for long runs)
#   FUZZ_SANITIZER  none (default: the bridge has no unsafe code, a finding is a
#                   panic) or address (AddressSanitizer)
#
# cargo-fuzz is installed under target/tools when missing (a pinned
# version). It passes nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets
# the stable compiler accept them, so no nightly toolchain is needed.
# Inputs that find new paths go to target/fuzz-corpus/<target>, never into
# the committed seeds of fuzz/corpus/<target>; a crash is written to
# fuzz/artifacts/<target>/ and the command to reproduce it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
profile="${FUZZ_PROFILE:-dev}"
sanitizer="${FUZZ_SANITIZER:-none}"
cargo_fuzz_version=0.13.2
tools="$PWD/target/tools"

if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  echo "== installing cargo-fuzz $cargo_fuzz_version into $tools"
  cargo install --locked --quiet --root "$tools" "cargo-fuzz@$cargo_fuzz_version"
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1

build_flags=(--"$profile" --sanitizer "$sanitizer" --target-dir "$PWD/target/fuzz-$profile")
echo "== cargo fuzz build (${profile}, sanitizer ${sanitizer})"
cargo fuzz build "${build_flags[@]}"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
mkdir -p target/fuzz-logs
for target in "${targets[@]}"; do
  work="target/fuzz-corpus/$target"
  log="target/fuzz-logs/$target.log"
  mkdir -p "$work" "fuzz/corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  # One process (libFuzzer's default; -jobs would fork workers that log to
  # files): the machine is shared. New inputs go to $work, the committed
  # seeds are read only.
  set +e
  cargo fuzz run "${build_flags[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  status=$?
  set -e
  grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed (exit $status): the input is in fuzz/artifacts/$target/, the log in $log" >&2
    exit 1
  fi
done
echo "== fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
