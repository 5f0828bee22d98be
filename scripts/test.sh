#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs dependencies, builds, runs CTest.
#   scripts/test.sh              release build in build/
#   scripts/test.sh --sanitize   ASan+UBSan build in build-asan/
# Extra arguments after -- go to ctest (e.g. -- -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
  build_dir=build-asan
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DMODELFLEET_SANITIZE=ON)
  shift
fi
[ "${1:-}" = "--" ] && shift

scripts/install-deps.sh
cmake -S . -B "$build_dir" "${cmake_args[@]}"
cmake --build "$build_dir" -j "$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build_dir"
# A skip is not a pass: a run in which any test was skipped (a missing dependency, a GTEST_SKIP)
# fails, after CTest's own summary. MODELFLEET_ALLOW_SKIPS=1 lets a developer run a partial
# setup on purpose.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ctest --output-on-failure --no-label-summary --timeout 900 "$@" 2>&1 | tee "$log" || status=$?
if [ "$status" -eq 0 ] && [ "${MODELFLEET_ALLOW_SKIPS:-0}" != 1 ] && grep -q '(Skipped)$' "$log"; then
  echo "FAILED: tests were skipped (a skip is not a pass; MODELFLEET_ALLOW_SKIPS=1 to accept):" >&2
  grep '(Skipped)$' "$log" >&2
  status=1
fi
exit "$status"
