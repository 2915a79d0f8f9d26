#!/usr/bin/env bash
# The sanitizer test suite and the fuzzers (tests/fuzz/README.md):
#   tests/fuzz/run.sh SECONDS   build build-fuzz with clang (ASan + UBSan, libFuzzer
#                               coverage), run the whole test suite under the sanitizers,
#                               then each fuzzer for SECONDS, one after the other
#   tests/fuzz/run.sh 0         the sanitizer build and test suite, then each fuzzer over its
#                               seeds and regression inputs only (deterministic: CI)
# Environment: DFQ_FUZZ_BUILD (build directory, default build-fuzz),
# DFQ_FUZZ_SKIP_TESTS=1 (fuzzers only), DFQ_FUZZ_ONLY=artifact|image (one fuzzer).
# Exits non-zero when a test fails or a fuzzer finds anything; findings are
# left in BUILD/findings/<fuzzer>/ (replay one: BUILD/tests/fuzz/fuzz_<fuzzer> FILE).
set -euo pipefail
seconds="${1:-}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: tests/fuzz/run.sh SECONDS   (seconds per fuzzer; 0: sanitizer test suite only)" >&2
  exit 2
fi
cd "$(dirname "$0")/../.."
source_dir=$PWD
build="${DFQ_FUZZ_BUILD:-build-fuzz}"
fuzzers=(artifact image)
[ -n "${DFQ_FUZZ_ONLY:-}" ] && fuzzers=("$DFQ_FUZZ_ONLY")

bash scripts/install-deps.sh
bash tests/fuzz/install-deps.sh

# Sanitizer run-time options: halt_on_error=1, so any report fails the test or
# stops the fuzzer (LeakSanitizer stays on; nothing is suppressed).
export ASAN_OPTIONS="halt_on_error=1:symbolize=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-/usr/bin/llvm-symbolizer-14}"
[ -x "$ASAN_SYMBOLIZER_PATH" ] || ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer

start=$(date +%s)
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 \
  -DDFQ_SANITIZE=address,undefined -DDFQ_FUZZ=ON >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j2 >"$build/build.log" 2>&1 ||
  { grep -E "error|Error" "$build/build.log" | head -40; echo "fuzz: build failed (log $build/build.log)"; exit 1; }
built=$(date +%s)
echo "fuzz: sanitizer build took $((built - start)) s"

status=0
if [ "${DFQ_FUZZ_SKIP_TESTS:-0}" != 1 ]; then
  if (cd "$build" && ctest -j2 --output-on-failure); then
    echo "fuzz: the test suite passes under ASan + UBSan ($(( $(date +%s) - built )) s)"
  else
    echo "fuzz: the test suite FAILS under ASan + UBSan ($(( $(date +%s) - built )) s)"
    status=1
  fi
fi
if [ "$seconds" -eq 0 ]; then
  for name in "${fuzzers[@]}"; do
    if "$build/tests/fuzz/fuzz_$name" -runs=0 "$source_dir/tests/fuzz/corpus/$name" \
      "$source_dir/tests/fuzz/regressions/$name" >"$build/replay-$name.log" 2>&1; then
      echo "fuzz: $name replays its seeds and regression inputs cleanly"
    else
      echo "fuzz: $name FAILS on its seeds or regression inputs (log $build/replay-$name.log)"
      status=1
    fi
  done
  exit "$status"
fi

# Each fuzzer grows a working corpus in the build directory from the checked-in
# seeds and regression inputs (new units go into the first directory only).
summary="$build/fuzz-summary.md"
{
  echo "| fuzzer | seconds | executions | exec/s | coverage (cov / ft) | corpus | findings |"
  echo "|---|---|---|---|---|---|---|"
} >"$summary"
for name in "${fuzzers[@]}"; do
  corpus="$build/corpus/$name"
  findings="$build/findings/$name"
  log="$build/fuzz-$name.log"
  mkdir -p "$corpus" "$findings" "$source_dir/tests/fuzz/regressions/$name"
  echo "fuzz: $name for $seconds s (log $log)"
  t0=$(date +%s)
  set +e
  "$build/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=3072 \
    -artifact_prefix="$findings/" "$corpus" "$source_dir/tests/fuzz/corpus/$name" \
    "$source_dir/tests/fuzz/regressions/$name" >"$log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s)
  stat_of() { grep -m1 "^stat::$1:" "$log" | awk '{print $2}'; }
  execs=$(stat_of number_of_executed_units)
  rate=$(stat_of average_exec_per_sec)
  cov=$(grep -E "^#[0-9]+" "$log" | grep -o "cov: [0-9]* ft: [0-9]*" | tail -1 | awk '{print $2 " / " $4}')
  units=$(grep -E "^#[0-9]+" "$log" | grep -o "corp: [0-9]*/[0-9]*[a-zA-Z]*" | tail -1 | awk '{print $2}')
  found=$(find "$findings" -type f | wc -l)
  [ "$rc" -ne 0 ] && [ "$found" -eq 0 ] && found="exit $rc"
  echo "| $name | $((t1 - t0)) | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${units:-?} | $found |" >>"$summary"
  if [ "$rc" -ne 0 ] || [ "$found" != 0 ]; then
    status=1
    echo "fuzz: $name FOUND something (exit $rc):"
    grep -E "^==[0-9]+==ERROR|runtime error|terminate called|what\(\)|^SUMMARY|Test unit written" "$log" | head -20
  fi
done
echo
cat "$summary"
exit "$status"
