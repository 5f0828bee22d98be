#!/usr/bin/env bash
# The main job on one machine: builds modelfleet, starts a private PostgreSQL 15 cluster and
# modelfleet-server, then plays a release: an admin creates a publisher token and trusts a
# signing key, CI pushes a signed artifact of the mat's person-detection model, the admin
# promotes it to production, and a device resolves mat-person@production (what used to be a
# polled latest.json) and downloads it resumably, verifying its digest.
#
#   deploy/demo.sh           run the story, then stop everything
#   deploy/demo.sh --keep    leave the server running (Ctrl-C stops it)
#
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing dependencies and building"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target modelfleet-server modelfleet modelfleet-devsim
server_bin=$root/build/server/modelfleet-server
cli_bin=$root/build/client/modelfleet
devsim_bin=$root/build/client/devsim/modelfleet-devsim

work=$(mktemp -d /tmp/modelfleet-demo-XXXXXX)
pg_bin=/usr/lib/postgresql/15/bin
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
grpc_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi
server_pid=""
devsim_pid=""
cleanup() {
  [ -n "$devsim_pid" ] && kill -TERM "$devsim_pid" 2>/dev/null && wait "$devsim_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "starting PostgreSQL 15 on 127.0.0.1:$pg_port (data in $work/pg)"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE modelfleet" >/dev/null
db="host=127.0.0.1 port=$pg_port dbname=modelfleet user=postgres"

step "starting modelfleet-server on 127.0.0.1:$grpc_port (blobs in $work/blobs)"
mkdir -p "$work/blobs" "$work/cache"
"$server_bin" serve --insecure --listen "127.0.0.1:$grpc_port" --database-url "$db" \
  --blob-dir "$work/blobs" --cache-dir "$work/cache" --require-signatures \
  --check-in-interval-seconds 1 --controller-interval-ms 300 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
grep "listening on" "$work/server.log"

export MODELFLEET_SERVER=127.0.0.1:$grpc_port MODELFLEET_INSECURE=1
step "bootstrap: the first admin token comes from the database side"
admin=$("$server_bin" create-token --database-url "$db" --name bootstrap --role admin 2>/dev/null)
echo "admin token: ${admin:0:10}... (stored only as its SHA-256)"

step "admin: a publisher token for CI and a trusted signing key"
publisher=$(MODELFLEET_TOKEN=$admin "$cli_bin" token create ci --role publisher | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
device=$(MODELFLEET_TOKEN=$admin "$cli_bin" token create mat-0001 --role device | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
openssl genpkey -algorithm ed25519 -out "$work/release.key" 2>/dev/null
openssl pkey -in "$work/release.key" -pubout -out "$work/release.pub"
MODELFLEET_TOKEN=$admin "$cli_bin" key add release-2026 "$work/release.pub"

step "CI: create the model and push two signed releases"
export MODELFLEET_TOKEN=$publisher
"$cli_bin" model create mat-person --task person-detection --class-labels empty,sitting,lying_full,lying_partial
for v in 1.0.0 1.1.0 1.2.0; do
  # Stand-in bytes until the release pipeline trains a real TorchScript int8 model.
  head -c $((3 * 1024 * 1024)) /dev/urandom >"$work/mat-person-$v.pt"
  "$cli_bin" push mat-person "$v" "$work/mat-person-$v.pt" --quantization ptq-static-qnnpack \
    --metric accuracy=0.9${v:2:1}1 --metric latency_ms=3.2 --label hw=rev3 \
    --git-commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" --ci-run-id demo-$v \
    --sign-key "$work/release.key" --key-id release-2026 | python3 -c 'import json,sys; m=json.load(sys.stdin)["manifest"]; print("pushed", m["version"], "sha256", m["digest"])'
done

step "admin: promote to production (every move is recorded)"
MODELFLEET_TOKEN=$admin "$cli_bin" alias set mat-person production 1.0.0 --reason "first release"
MODELFLEET_TOKEN=$admin "$cli_bin" alias set mat-person production 1.1.0 --reason "better recall on lying_partial"
MODELFLEET_TOKEN=$admin "$cli_bin" alias history mat-person production
"$cli_bin" versions mat-person --filter 'metrics.accuracy >= 0.9 AND labels.hw = "rev3"' | python3 -c 'import json,sys; print("versions with accuracy >= 0.9 on rev3:", [json.loads(l)["manifest"]["version"] for l in sys.stdin])'

step "device: resolve mat-person@production and download it (resumable, verified)"
export MODELFLEET_TOKEN=$device
head -c 1000000 "$work/mat-person-1.1.0.pt" >"$work/device-model.pt.part"   # an interrupted download
"$cli_bin" download mat-person@production -o "$work/device-model.pt" | python3 -c 'import json,sys; m=json.load(sys.stdin); print("device got", m["version"], "signed by", m["signature"]["key_id"])'
cmp "$work/device-model.pt" "$work/mat-person-1.1.0.pt" && echo "device copy is byte-identical to what CI pushed"

step "fleet: 20 simulated mats enroll (flashed with 1.0.0) and check in every second"
enroll=$(MODELFLEET_TOKEN=$admin "$cli_bin" enroll-token create factory-line --max-uses 20 --auto-accept | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$devsim_bin" --server "$MODELFLEET_SERVER" --enrollment-token "$enroll" --devices 20 --model mat-person \
  --factory-version 1.0.0 --fail-version 1.2.0 --interval-ms 500 >"$work/devsim.log" 2>&1 &
devsim_pid=$!
sleep 2
tail -n 1 "$work/devsim.log"

show_events() {
  python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line); r = e.get("rollout", {}); p = r.get("progress", {})
    print("  %-18s %-12s stage %s  devices %s activated %s failed %s  %s" % (e.get("kind"), r.get("state", "").replace("ROLLOUT_STATE_", ""),
          r.get("current_stage", 0), p.get("devices", 0), p.get("activated", 0), p.get("failed", 0), r.get("state_reason", "")))'
}

step "admin: staged rollout of 1.1.0 (10% -> 50% -> 100%, failure gate 20%), watched to the end"
export MODELFLEET_TOKEN=$admin
rollout=$("$cli_bin" rollout create mat-person 1.1.0 --target '*' \
  --stage 10:min=2:soak=2:threshold=0.9:max-failure=0.2 --stage 50:soak=2:threshold=0.9:max-failure=0.2 \
  --stage 100:threshold=1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["rollout_id"])')
"$cli_bin" rollout watch "$rollout" | show_events
tail -n 1 "$work/devsim.log"

step "CI pushed a broken 1.2.0 (it fails its self-test on the mats): rollout with auto-rollback"
bad=$("$cli_bin" rollout create mat-person 1.2.0 --target '*' --auto-rollback \
  --stage 10:min=2:soak=2:threshold=0.9:max-failure=0.1 --stage 100 \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["rollout_id"])')
if "$cli_bin" rollout watch "$bad" | show_events; then
  echo "unexpected: the broken rollout completed" >&2
  exit 1
fi
sleep 2
tail -n 1 "$work/devsim.log"
"$cli_bin" rollout show "$bad" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("rollout", r["rollout_id"], r["state"], "-", r["state_reason"])'

step "done"
echo "the fleet still runs 1.1.0: $(tail -n 1 "$work/devsim.log" | sed 's/.*running://')"
if [ "$keep" = 1 ]; then
  echo "server on 127.0.0.1:$grpc_port, admin token $admin; Ctrl-C to stop"
  wait "$server_pid"
fi
