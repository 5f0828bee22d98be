#!/usr/bin/env bash
# CTest one_command_story: runs the README's first command in its CI form,
#   deploy/demo.sh --short --no-install --build-dir BINARY_DIR --logs BINARY_DIR/tests/story-logs
# and checks, independently of the script's own checks, that it told the whole story: exit 0, the
# summary line (1.1.0 reached 100%, the broken 1.2.0 was rolled back, every mat on 1.1.0), the
# three rollouts in their final states in the summary, and nothing left behind: every process the
# demo started (its logs/pids) has exited and its work directory is gone; and no log holds an
# ASan/UBSan report (the MODELFLEET_SANITIZE build runs this test too).
#
#   run_story.sh SOURCE_DIR BINARY_DIR
#
# Exits 77 (skipped) without PostgreSQL 15 or Debian's python3-torch.
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_DIR BINARY_DIR" >&2
  exit 64
fi
source_dir=$1 binary_dir=$2
[ -x /usr/lib/postgresql/15/bin/initdb ] || { echo "one_command_story: SKIPPED: no PostgreSQL 15"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "one_command_story: SKIPPED: /usr/bin/python3 has no torch"; exit 77; }

fail() { echo "one_command_story: FAIL: $*" >&2; exit 1; }
logs=$binary_dir/tests/story-logs
rm -rf "$logs"
out=$(mktemp /tmp/modelfleet-story-XXXXXX.out)
trap 'rm -f "$out"' EXIT

"$source_dir/deploy/demo.sh" --short --no-install --build-dir "$binary_dir" --logs "$logs" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || fail "deploy/demo.sh --short exited $rc (logs: $logs)"

summary=$(grep '^modelfleet demo: OK' "$out") || fail "no 'modelfleet demo: OK' summary line"
echo "$summary" | grep -q '1.1.0 reached 100%' || fail "the summary does not say 1.1.0 reached 100%: $summary"
echo "$summary" | grep -q 'broken 1.2.0 was rolled back' || fail "the summary does not say 1.2.0 was rolled back: $summary"
echo "$summary" | grep -Eq '([0-9]+)/\1 mats on 1.1.0' || fail "the summary does not say every mat is on 1.1.0: $summary"
for expect in '1\.0\.0 +COMPLETED' '1\.1\.0 +COMPLETED +10% -> 50% -> 100%' '1\.2\.0 +ROLLED_BACK'; do
  grep -Eq "$expect" "$out" || fail "the summary's rollout list has no line matching '$expect'"
done

# Nothing left running, nothing left behind but the logs.
[ -s "$logs/pids" ] || fail "the demo recorded no processes in $logs/pids"
grep -q 'modelfleet-agent' "$logs/pids" || fail "no agents in $logs/pids"
while read -r pid what; do
  if kill -0 "$pid" 2>/dev/null && grep -q "$(basename "${what%% *}")" "/proc/$pid/cmdline" 2>/dev/null; then
    fail "$what (pid $pid) is still running after the demo ended"
  fi
done <"$logs/pids"
sanitizer=$(grep -l -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$logs"/* "$out" 2>/dev/null)
[ -z "$sanitizer" ] || fail "sanitizer reports in: $sanitizer"
work=$(sed -n 's/^work directory: //p' "$out" | head -n 1)
[ -n "$work" ] || fail "the demo did not say its work directory"
[ ! -e "$work" ] || fail "the demo left its work directory $work behind"
echo "one_command_story: passed"
