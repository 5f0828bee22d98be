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
# Later issues extend this with a simulated fleet and a staged rollout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing dependencies and building"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target modelfleet-server modelfleet
server_bin=$root/build/server/modelfleet-server
cli_bin=$root/build/client/modelfleet

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
cleanup() {
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
  --blob-dir "$work/blobs" --cache-dir "$work/cache" --require-signatures >"$work/server.log" 2>&1 &
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
for v in 1.0.0 1.1.0; do
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

step "done"
if [ "$keep" = 1 ]; then
  echo "server on 127.0.0.1:$grpc_port, admin token $admin; Ctrl-C to stop"
  wait "$server_pid"
fi
