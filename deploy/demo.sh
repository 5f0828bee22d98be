#!/usr/bin/env bash
# modelfleet in one command, on one machine (the README's first command):
#
#   installs what is missing (scripts/install-deps.sh) and builds modelfleet; starts a private
#   PostgreSQL 15 and modelfleet-server (local blob store, or S3/MinIO when MODELFLEET_S3_ENDPOINT
#   is set); creates the admin and CI tokens; generates an Ed25519 release key with the CLI and
#   makes the server trust it; runs the release pipeline (deploy/release/release.sh: data set,
#   training, int8 quantization, quality gate, manifest, signed push) for 1.0.0 and rolls it out to
#   a fleet of real modelfleet-agent processes (synthetic pressure sensors, one state directory
#   and config file each, enrolled with a fleet token, the release key pinned); releases 1.1.0
#   and takes it through a staged rollout (10% -> 50% -> 100%, soak, health gates, auto-rollback),
#   watched with `modelfleet rollouts watch` until it completes; then CI releases a broken 1.2.0
#   (its manifest's self-test reference is wrong, so every mat refuses it) and its rollout rolls
#   itself back on the first stage while the fleet stays on 1.1.0.
#
# The script checks its own story: it exits non-zero, saying what went wrong, when a rollout does
# not end as it should, the fleet is not on the good version at the end, or the broken version was
# not rolled back. It ends with a summary and the CLI commands to look around, and stops
# everything it started (agents, server, PostgreSQL, temporary files; the logs are kept) at the
# end or on Ctrl-C.
#
#   deploy/demo.sh                      the full story: 20 mats, full releases (~3.5 min on 2 cores after the build)
#   deploy/demo.sh --short              the CI form: 4 mats, release.sh --quick, short soaks (<1 min)
#   deploy/demo.sh --keep               leave everything up after the summary until Ctrl-C
#
# Options: --mats N, --short, --keep, --no-install, --build-dir DIR, --logs DIR, -h/--help.
# S3/MinIO instead of the local blob store: MODELFLEET_S3_ENDPOINT (e.g. http://127.0.0.1:9000),
# MODELFLEET_S3_ACCESS_KEY, MODELFLEET_S3_SECRET_KEY, and optionally MODELFLEET_S3_BUCKET (default
# modelfleet), MODELFLEET_S3_REGION (us-east-1), MODELFLEET_S3_PREFIX (default: a fresh
# demo-<time>/ prefix per run, so runs never see each other's objects).
# Exit codes: 0 the story happened as told; 1 it did not (the message says what); 2 bad usage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
started=$SECONDS

usage() {
  cat <<'EOF'
usage: deploy/demo.sh [options]

  --mats N          how many mats (modelfleet-agent processes) to run (default 20; 4 with --short)
  --short           the CI form: 4 mats, release.sh --quick (tiny data set, 2 epochs), short soaks
  --keep            after the summary, leave the server, agents and PostgreSQL up until Ctrl-C
  --no-install      do not run scripts/install-deps.sh (the machine has everything)
  --build-dir DIR   build into / reuse DIR (default build-demo, RelWithDebInfo); an existing
                    build tree is only brought up to date for the three binaries the demo runs
  --logs DIR        where the logs go and stay (default: logs/ in the demo's work directory,
                    which is kept when the demo stops)
  -h, --help        this help

S3 / MinIO instead of the local blob store: set MODELFLEET_S3_ENDPOINT, MODELFLEET_S3_ACCESS_KEY
and MODELFLEET_S3_SECRET_KEY (and optionally MODELFLEET_S3_BUCKET, _REGION, _PREFIX).
Exit codes: 0 the story happened as told; 1 it did not (the message says what); 2 bad usage.
EOF
}
die_usage() { echo "demo.sh: $*" >&2; echo "demo.sh: see --help" >&2; exit 2; }

mats="" short=0 keep=0 install=1 build_dir=build-demo logs=""
need_value() { [[ $# -ge 2 && -n $2 ]] || die_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --mats) need_value "$@"; mats=$2; shift 2 ;;
    --short) short=1; shift ;;
    --keep) keep=1; shift ;;
    --no-install) install=0; shift ;;
    --build-dir) need_value "$@"; build_dir=$2; shift 2 ;;
    --logs) need_value "$@"; logs=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
  esac
done
if [[ $short == 1 ]]; then mats=${mats:-4}; else mats=${mats:-20}; fi
[[ $mats =~ ^[0-9]+$ ]] && ((mats >= 2 && mats <= 200)) ||
  die_usage "--mats '$mats' must be a number from 2 to 200 (the first stage needs two mats)"
if [[ -n ${MODELFLEET_S3_ENDPOINT:-} ]]; then
  [[ -n ${MODELFLEET_S3_ACCESS_KEY:-} && -n ${MODELFLEET_S3_SECRET_KEY:-} ]] ||
    die_usage "MODELFLEET_S3_ENDPOINT is set: MODELFLEET_S3_ACCESS_KEY and MODELFLEET_S3_SECRET_KEY are needed too"
fi
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
[[ -z $logs || $logs = /* ]] || logs=$(pwd)/$logs

# ---- the story's settings ------------------------------------------------------------------------
model=mat-person
key_id=demo-release
python=/usr/bin/python3             # Debian's python3-torch lives here (not in a pyenv python3)
if [[ $short == 1 ]]; then
  release_flags=(--quick) soak=2 frame_rate=2
else
  release_flags=() soak=8 frame_rate=2
fi
watch_timeout=300                   # a rollout that neither completes nor stops is a failure
# What the mats do, in turn (the synthetic sensor loops its schedule; each mat has its own seed).
schedules=(
  "empty:4s,sitting:8s,lying_full:12s,lying_partial:4s"
  "lying_full:20s,sitting:5s,empty:5s"
  "sitting:10s,empty:3s,lying_partial:6s,lying_full:10s"
  "empty:15s,lying_full:15s"
  "lying_partial:5s,lying_full:10s,sitting:6s"
)

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { echo; bold "== $* ($((SECONDS - started)) s)"; }
say() { printf '   %s\n' "$*"; }
fail() {
  echo >&2
  echo "demo.sh: STORY FAILED: $*" >&2
  [[ -n ${logs:-} ]] && echo "demo.sh: logs in $logs" >&2
  exit 1
}
trap 'echo "demo.sh: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

# ---- install and build ----------------------------------------------------------------------------
if [[ $install == 1 ]]; then
  step "installing what is missing (scripts/install-deps.sh)"
  scripts/install-deps.sh
fi
pg_bin=/usr/lib/postgresql/15/bin
[[ -x $pg_bin/initdb ]] || fail "PostgreSQL 15 is not installed ($pg_bin/initdb); run without --no-install"
"$python" -c 'import torch' 2>/dev/null || fail "$python cannot import torch (apt-get install python3-torch)"

targets=(modelfleet-server modelfleet modelfleet-agent)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if [[ -f $build_dir/CMakeCache.txt ]]; then
  step "bringing $build_dir up to date (${targets[*]})"
else
  step "building into $build_dir (RelWithDebInfo; the first build takes a while)"
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || fail "cmake could not configure $build_dir"
fi
if ! cmake --build "$build_dir" --target "${targets[@]}" | sed '/Built target/d'; then
  fail "the build failed (cmake --build $build_dir --target ${targets[*]})"
fi
server_bin=$build_dir/server/modelfleet-server
cli_bin=$build_dir/client/cli/modelfleet
agent_bin=$build_dir/client/agent/app/modelfleet-agent
for b in "$server_bin" "$cli_bin" "$agent_bin"; do [[ -x $b ]] || fail "the build did not produce $b"; done

# ---- a work directory, and stopping everything we start ------------------------------------------
work=$(mktemp -d /tmp/modelfleet-demo-XXXXXX)
chmod 0755 "$work"                  # PostgreSQL runs as postgres when we are root
logs=${logs:-$work/logs}
mkdir -p "$logs"
echo "work directory: $work"
echo "logs: $logs"
: >"$logs/pids"                     # every process the demo starts: "<pid> <what>"
mkdir -m 0700 "$work/secrets"
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)
server_pid="" pg_started=0 agent_pids=() stopping=0
cleanup() {
  local rc=$?
  ((stopping)) && return
  stopping=1
  trap - ERR
  trap '' PIPE INT TERM   # finish stopping even if our output is gone or Ctrl-C is pressed again
  set +e
  echo
  echo "== stopping: ${#agent_pids[@]} agents, the server, PostgreSQL"
  for pid in "${agent_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${agent_pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  if ((pg_started)); then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 ||
      "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1
  fi
  # Everything but the logs goes (they are what the summary points at).
  if [[ $logs == "$work"/* ]]; then
    find "$work" -mindepth 1 -maxdepth 1 ! -name "$(basename "$logs")" -exec rm -rf {} +
    echo "   logs kept in $logs (rm -rf $work when done)"
  else
    rm -rf "$work"
    echo "   logs kept in $logs"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo.sh: interrupted"; exit 130' INT TERM

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Runs a Python snippet on stdin (JSON from the CLI's -o json).
pyjson() {
  local code=$1
  shift
  "$python" -c "import json, sys, collections
$code" "$@"
}

# ---- PostgreSQL and the server --------------------------------------------------------------------
pg_port=$(free_port)
step "starting a private PostgreSQL 15 on 127.0.0.1:$pg_port"
mkdir -p "$work/pg"
: >"$logs/postgres.log"
[[ $(id -u) == 0 ]] && chown postgres "$work/pg" "$logs/postgres.log"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >"$logs/postgres-initdb.log" 2>&1 ||
  fail "initdb failed: see $logs/postgres-initdb.log"
pg_started=1
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$logs/postgres.log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null ||
  fail "PostgreSQL did not start: see $logs/postgres.log"
echo "$(head -n 1 "$work/pg/postmaster.pid") postgres" >>"$logs/pids"
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE modelfleet" >/dev/null
db="host=127.0.0.1 port=$pg_port dbname=modelfleet user=postgres"

grpc_port=$(free_port)
http_port=$(free_port)
blob_flags=(--blob-store local --blob-dir "$work/blobs")
blob_where="local blob store in $work/blobs"
if [[ -n ${MODELFLEET_S3_ENDPOINT:-} ]]; then
  # The keys stay in the environment (the server reads MODELFLEET_S3_ACCESS_KEY/SECRET_KEY), out
  # of the process list; the rest become the server's flags.
  s3_prefix=${MODELFLEET_S3_PREFIX:-demo-$(date +%Y%m%d-%H%M%S)-$$/}
  blob_flags=(--blob-store s3 --s3-endpoint "$MODELFLEET_S3_ENDPOINT"
              --s3-bucket "${MODELFLEET_S3_BUCKET:-modelfleet}" --s3-region "${MODELFLEET_S3_REGION:-us-east-1}"
              --s3-prefix "$s3_prefix")
  blob_where="S3 $MODELFLEET_S3_ENDPOINT bucket ${MODELFLEET_S3_BUCKET:-modelfleet} prefix $s3_prefix"
fi
step "starting modelfleet-server on 127.0.0.1:$grpc_port ($blob_where)"
mkdir -p "$work/blobs" "$work/cache"
"$server_bin" serve --insecure --listen "127.0.0.1:$grpc_port" --http-listen "127.0.0.1:$http_port" \
  --database-url "$db" "${blob_flags[@]}" \
  --cache-dir "$work/cache" --require-signatures --check-in-interval-seconds 1 \
  --controller-interval-ms 300 --shutdown-grace-seconds 5 >"$logs/server.log" 2>&1 &
server_pid=$!
echo "$server_pid modelfleet-server" >>"$logs/pids"
for _ in $(seq 300); do
  grep -q "listening on" "$logs/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "listening on" "$logs/server.log" || { tail -n 20 "$logs/server.log" >&2; fail "modelfleet-server did not start: see $logs/server.log"; }
say "$(grep -m1 "listening on" "$logs/server.log" | sed 's/^[^ ]* [^ ]* //')"

# The CLI's connection, for everything below: this server, plaintext, no user config file.
: >"$work/cli.conf"
export MODELFLEET_SERVER=127.0.0.1:$grpc_port MODELFLEET_INSECURE=1 MODELFLEET_CONFIG=$work/cli.conf
unset MODELFLEET_TOKEN MODELFLEET_TLS_CA MODELFLEET_OUTPUT
cli() { "$cli_bin" "$@"; }

# ---- tokens and the release key -------------------------------------------------------------------
step "admin: the first admin token (from the database side), a CI token, a release key"
admin=$("$server_bin" create-token --database-url "$db" --name demo-admin --role admin 2>>"$logs/server.log")
printf '%s\n' "$admin" >"$work/secrets/admin-token"
say "admin token ${admin:0:8}... (the server keeps only its SHA-256)"
publisher=$(MODELFLEET_TOKEN=$admin cli -o json tokens create ci-release --role publisher |
  pyjson 'print(json.load(sys.stdin)["secret"])')
say "publisher token for CI ${publisher:0:8}..."
cli keys generate "$work/secrets/release.key" "$work/secrets/release.pub" >/dev/null
MODELFLEET_TOKEN=$admin cli keys add "$key_id" "$work/secrets/release.pub" >/dev/null
say "Ed25519 release key '$key_id' generated (modelfleet keys generate) and trusted (modelfleet keys add)"
MODELFLEET_TOKEN=$publisher cli models create "$model" --task person-detection \
  --description "person on the mat: empty / sitting / lying fully / lying partially" \
  --class-labels empty,sitting,lying_full,lying_partial >/dev/null
say "model $model created"

# ---- the release pipeline -------------------------------------------------------------------------
declare -A released_summary=()
# release VERSION [release.sh flags...]: CI cuts a release and pushes it, signed.
release() {
  local version=$1
  shift
  local out=$work/releases/$version rc=0
  MODELFLEET_TOKEN=$publisher MODELFLEET_OUTPUT=json MODELFLEET_GIT_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown) \
    MODELFLEET_CI_RUN_ID=demo-$version deploy/release/release.sh --version "$version" --model "$model" \
    --out "$out" --cli "$cli_bin" --sign-key "$work/secrets/release.key" --key-id "$key_id" \
    "${release_flags[@]}" "$@" >"$logs/release-$version.log" 2>&1 || rc=$?
  if [[ $rc != 0 ]]; then
    tail -n 15 "$logs/release-$version.log" >&2
    fail "release.sh for $version exited $rc (3 = refused by the quality gate, 4 = push failed): see $logs/release-$version.log"
  fi
  released_summary[$version]=$(pyjson '
m = json.load(open(sys.argv[1]))
print("int8 accuracy %.3f (fp32 %.3f), p50 %.2f ms, %d KB" % (m["int8"]["accuracy"], m["fp32"]["accuracy"],
      m["int8"]["latency_p50_ms"], m["int8"]["size_bytes"] / 1024))' "$out/metrics.json")
  local digest
  digest=$(MODELFLEET_TOKEN=$publisher cli -o json versions show "$model@$version" |
    pyjson 'v = json.load(sys.stdin); m = v.get("manifest", v); print("sha256 %s, signed by %s" % (m["digest"].split(":")[-1][:12], m["signature"]["key_id"]))')
  say "released $model $version: ${released_summary[$version]}; $digest"
}

step "CI: release pipeline for $model 1.0.0 (data set, training, int8 PTQ, gate, signed push)"
say "log: $logs/release-1.0.0.log"
release 1.0.0 --seed 1

# ---- the fleet ------------------------------------------------------------------------------------
step "the fleet: $mats mats (modelfleet-agent, synthetic sensors at $frame_rate Hz) enroll with a fleet token"
enroll=$(MODELFLEET_TOKEN=$admin cli -o json enroll-tokens create demo-factory-line --max-uses "$mats" --auto-accept |
  pyjson 'print(json.load(sys.stdin)["token"])')
for i in $(seq 1 "$mats"); do
  name=$(printf 'mat-%04d' "$i")
  dir=$work/mats/$name
  mkdir -p "$dir"
  mkdir -m 0700 "$dir/state"
  schedule=${schedules[$(((i - 1) % ${#schedules[@]}))]}
  cat >"$dir/agent.conf" <<EOF
# $name, written by deploy/demo.sh (every key: deploy/agent.conf.example)
server = 127.0.0.1:$grpc_port
insecure = true
enrollment_token = $enroll
state_dir = $dir/state
publisher_key = $key_id=$work/secrets/release.pub
hardware_id = $name
site = $([[ $((i % 2)) == 1 ]] && echo ward-a || echo ward-b)
hardware_revision = 3
firmware_version = 2.4.$((i % 3))
label = room=$((100 + (i + 1) / 2))
sensor = synthetic
synthetic_schedule = $schedule
synthetic_seed = $i
frame_rate_hz = $frame_rate
check_in_interval = 2s
backoff_initial = 500ms
backoff_max = 5s
EOF
  "$agent_bin" --config "$dir/agent.conf" >"$logs/$name.events.jsonl" 2>"$logs/$name.log" &
  agent_pids+=($!)
  echo "$! modelfleet-agent $name" >>"$logs/pids"
done
say "config files and state directories in $work/mats/<mat>/; logs $logs/mat-*.log, presence events $logs/mat-*.events.jsonl"

# fleet_versions: "<version>=<count> ..." of the mats' running model (none = no model yet).
fleet_versions() {
  MODELFLEET_TOKEN=$admin cli -o json devices list | pyjson '
count = collections.Counter()
for d in json.load(sys.stdin):
    running = [r["version"] for r in d.get("running", []) if r.get("model") == sys.argv[1]]
    count[running[0] if running else "none"] += 1
print(" ".join("%s=%d" % kv for kv in sorted(count.items())))' "$model"
}
# wait_fleet WHAT SECONDS PYTHON-CONDITION: polls the device list until the condition on `devices`
# (the parsed JSON array) holds.
wait_fleet() {
  local what=$1 seconds=$2 condition=$3 deadline=$((SECONDS + $2))
  while :; do
    if MODELFLEET_TOKEN=$admin cli -o json devices list | pyjson "
devices = json.load(sys.stdin)
model, mats = sys.argv[1], int(sys.argv[2])
def runs(d, version):
    return any(r.get('model') == model and r.get('version') == version for r in d.get('running', []))
sys.exit(0 if ($condition) else 1)" "$model" "$mats"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      fail "$what: not so after $seconds s (the fleet: $(fleet_versions)); see $logs/mat-*.log"
    fi
    for pid in "${agent_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || fail "an agent (pid $pid) exited; see $logs/pids and $logs/mat-*.log"
    done
    sleep 1
  done
}
wait_fleet "all $mats mats enrolled and accepted" 90 \
  'sum(1 for d in devices if d.get("admission") == "DEVICE_ADMISSION_ACCEPTED") == mats'
say "$mats mats enrolled and accepted; running: $(fleet_versions)"

# ---- rollouts ---------------------------------------------------------------------------------------
declare -A rollout_of=()
# create_rollout VERSION ARGS...: prints the rollout id.
create_rollout() {
  local version=$1
  shift
  MODELFLEET_TOKEN=$admin cli -o json rollouts create "$model" "$version" --target '*' \
    --deployment-timeout-seconds 180 "$@" | pyjson 'print(json.load(sys.stdin)["rollout_id"])'
}
# watch_rollout ID: `modelfleet rollouts watch` (a live view on a terminal, event lines otherwise);
# returns its exit code (0 completed, 10 paused, 11 aborted, 12 rolled back).
# (--foreground: the watch stays in our process group, so Ctrl-C reaches it.)
watch_rollout() {
  local rc=0
  if [[ -t 1 ]]; then
    MODELFLEET_TOKEN=$admin timeout --foreground "$watch_timeout" "$cli_bin" rollouts watch "$1" || rc=$?
  else
    # Event lines: drop a progress line that says what the one before it said.
    set +e
    MODELFLEET_TOKEN=$admin timeout --foreground "$watch_timeout" "$cli_bin" rollouts watch "$1" |
      awk '{ key = $0; sub(/^[^ ]+ [^ ]+ +/, "", key); if (key != last) print; last = key; fflush() }'
    rc=${PIPESTATUS[0]}
    set -e
  fi
  [[ $rc == 124 ]] && fail "rollout $1 neither completed nor stopped within $watch_timeout s"
  return "$rc"
}
rollout_json() { MODELFLEET_TOKEN=$admin cli -o json rollouts show "$1"; }
# check_completed ID VERSION: the rollout is COMPLETED at its last stage, which covers 100%.
check_completed() {
  rollout_json "$1" | pyjson '
r = json.load(sys.stdin)
last = r["stages"][-1]
ok = r["state"] == "ROLLOUT_STATE_COMPLETED" and r["current_stage"] == len(r["stages"]) - 1 and last["percent"] == 100
print("rollout %s of %s: %s at stage %d/%d (%g%%)" % (r["rollout_id"], r["version"], r["state"].replace("ROLLOUT_STATE_", ""),
      r["current_stage"] + 1, len(r["stages"]), r["stages"][r["current_stage"]]["percent"]))
sys.exit(0 if ok else 1)' || fail "the rollout of $2 ($1) did not reach 100%"
}

step "admin: roll 1.0.0 out to every mat (one stage, 100%)"
rollout_of[1.0.0]=$(create_rollout 1.0.0 --stage 100:soak=0)
say "rollout ${rollout_of[1.0.0]}"
rc=0
watch_rollout "${rollout_of[1.0.0]}" || rc=$?
[[ $rc == 0 ]] || fail "the rollout of 1.0.0 (${rollout_of[1.0.0]}) ended with exit $rc instead of completing (0)"
say "$(check_completed "${rollout_of[1.0.0]}" 1.0.0)"
wait_fleet "every mat runs 1.0.0" 60 'len(devices) == mats and all(runs(d, "1.0.0") for d in devices)'
say "the fleet: $(fleet_versions)"

step "CI: release pipeline for $model 1.1.0 (another training run)"
say "log: $logs/release-1.1.0.log"
release 1.1.0 --seed 2 --parent-version 1.0.0

gates="soak=$soak:max-failure=0.2:max-error=0.05"
step "admin: staged rollout of 1.1.0: 10% -> 50% -> 100% (soak ${soak}s, failure and error-ratio gates, auto-rollback)"
rollout_of[1.1.0]=$(create_rollout 1.1.0 --auto-rollback \
  --stage "10:min=2:$gates" --stage "50:$gates" --stage "100:$gates")
say "rollout ${rollout_of[1.1.0]}; modelfleet rollouts watch ${rollout_of[1.1.0]}"
rc=0
watch_rollout "${rollout_of[1.1.0]}" || rc=$?
[[ $rc == 0 ]] || fail "the staged rollout of 1.1.0 (${rollout_of[1.1.0]}) ended with exit $rc instead of completing (0)"
say "$(check_completed "${rollout_of[1.1.0]}" 1.1.0)"
wait_fleet "every mat runs 1.1.0" 60 'len(devices) == mats and all(runs(d, "1.1.0") for d in devices)'
say "the fleet: $(fleet_versions)"

step "CI: a broken 1.2.0 (release.sh --broken-self-test: its self-test reference output is wrong)"
say "log: $logs/release-1.2.0.log"
release 1.2.0 --seed 2 --parent-version 1.1.0 --broken-self-test

step "admin: rollout of 1.2.0 (10% -> 100%, failure gate 10%, auto-rollback): the mats refuse it"
rollout_of[1.2.0]=$(create_rollout 1.2.0 --auto-rollback \
  --stage "10:min=2:soak=$soak:max-failure=0.1" --stage "100:soak=$soak:max-failure=0.1")
say "rollout ${rollout_of[1.2.0]}"
rc=0
watch_rollout "${rollout_of[1.2.0]}" || rc=$?
case $rc in
  12) say "rollouts watch exited 12: rolled back, as it should" ;;
  0) fail "the broken 1.2.0 rollout (${rollout_of[1.2.0]}) COMPLETED: the mats did not refuse it" ;;
  10) fail "the broken 1.2.0 rollout (${rollout_of[1.2.0]}) paused instead of rolling itself back" ;;
  *) fail "rollouts watch of the broken 1.2.0 rollout (${rollout_of[1.2.0]}) exited $rc, not 12 (rolled back)" ;;
esac
bad_report=$(rollout_json "${rollout_of[1.2.0]}" | pyjson '
r = json.load(sys.stdin)
if r["state"] != "ROLLOUT_STATE_ROLLED_BACK":
    print("state is %s, not ROLLED_BACK" % r["state"]); sys.exit(1)
steps = r.get("devices_by_step", {})
failed = sum(int(n) for s, n in steps.items() if "FAILED" in s)
print("rolled back at stage %d by the gate: %s; %d mat(s) refused 1.2.0" % (r["current_stage"] + 1, r["state_reason"], failed))
') || fail "the broken 1.2.0 rollout (${rollout_of[1.2.0]}): $bad_report"
say "$bad_report"
refusal=$(grep -h "deployment .* FAILED: .*self-test" "$logs"/mat-*.log | head -n 1 | sed 's/^.*\] update: //' || true)
[[ -n $refusal ]] || fail "no mat's log says it refused 1.2.0 because of its self-test (see $logs/mat-*.log)"
say "why, in a mat's log: ${refusal:0:150}..."
sleep 3   # a few check-ins: nobody may move to 1.2.0 after the rollback
wait_fleet "every mat still runs 1.1.0 after the rollback" 30 \
  'len(devices) == mats and all(runs(d, "1.1.0") for d in devices)'
say "the fleet: $(fleet_versions)"

# ---- summary ----------------------------------------------------------------------------------------
step "summary"
say "releases of $model (signed with '$key_id', pushed by release.sh):"
for v in 1.0.0 1.1.0 1.2.0; do
  note=""
  [[ $v == 1.2.0 ]] && note=" -- 1.1.0's model, with a self-test reference it does not give"
  say "  $v  ${released_summary[$v]}$note"
done
say "rollouts:"
MODELFLEET_TOKEN=$admin cli -o json rollouts list --model "$model" | pyjson '
for r in sorted(json.load(sys.stdin), key=lambda r: r["create_time"]):
    print("     %-38s %-6s %-12s %s" % (r["rollout_id"], r["version"], r["state"].replace("ROLLOUT_STATE_", ""),
          " -> ".join("%g%%" % s["percent"] for s in r["stages"])))'
say "the fleet: $mats mats, running: $(fleet_versions)"
# The same rollouts through the HTTP face's JSON API (Connect protocol), as curl would ask.
http_rollouts=$(MODELFLEET_TOKEN=$admin "$python" -c '
import json, os, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/modelfleet.v1.FleetService/ListRollouts" % sys.argv[1],
    data=json.dumps({"model": sys.argv[2]}).encode(),
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["MODELFLEET_TOKEN"]})
print(len(json.load(urllib.request.urlopen(req, timeout=10)).get("rollouts", [])))' "$http_port" "$model") ||
  fail "the JSON API on 127.0.0.1:$http_port did not answer ListRollouts"
grpc_rollouts=$(MODELFLEET_TOKEN=$admin cli -o json rollouts list --model "$model" | pyjson 'print(len(json.load(sys.stdin)))')
[[ $http_rollouts == "$grpc_rollouts" ]] ||
  fail "ListRollouts over HTTP gave $http_rollouts rollouts, over gRPC $grpc_rollouts"
say "HTTP face on http://127.0.0.1:$http_port: ListRollouts over JSON gives the same $http_rollouts rollouts"
say "logs: $logs (server.log, postgres.log, release-<v>.log, mat-<n>.log and .events.jsonl, pids)"
echo
say "look around (while the demo is up: --keep):"
say "  export MODELFLEET_SERVER=$MODELFLEET_SERVER MODELFLEET_INSECURE=1 MODELFLEET_TOKEN=$admin"
say "  $cli_bin devices list"
say "  $cli_bin versions list $model"
say "  $cli_bin versions show $model@1.1.0"
say "  $cli_bin rollouts list"
say "  $cli_bin rollouts show ${rollout_of[1.2.0]}"
say "  $cli_bin devices history <device id>"
say "  curl -s -H 'Content-Type: application/json' -H \"Authorization: Bearer \$MODELFLEET_TOKEN\" \\"
say "       -d '{}' http://127.0.0.1:$http_port/modelfleet.v1.FleetService/ListRollouts"
say "  curl -s http://127.0.0.1:$http_port/metrics          (Prometheus)"
echo
echo "modelfleet demo: OK in $((SECONDS - started)) s -- 1.1.0 reached 100% of $mats mats (${rollout_of[1.1.0]}), the broken 1.2.0 was rolled back (${rollout_of[1.2.0]}), $mats/$mats mats on 1.1.0"

if [[ $keep == 1 ]]; then
  echo
  bold "everything is still up (--keep): Ctrl-C stops it"
  while kill -0 "$server_pid" 2>/dev/null; do sleep 1; done
  fail "modelfleet-server exited by itself: see $logs/server.log"
fi
