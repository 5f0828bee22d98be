#!/usr/bin/env bash
# The docker-compose start-up sequence without docker: the same scripts and settings, run on the
# built binaries against a private PostgreSQL 15 cluster (CTest: deploy_compose_flow_live).
#
#   compose_flow_live.sh SOURCE_DIR SERVER_BIN AGENT_BIN CLI_BIN
#
# compose's `serve` does not migrate by itself -> migrate -> serve (the compose server's command
# and environment, read from docker-compose.yml) -> modelfleet-health says SERVING -> modelfleet-bootstrap makes the admin token, the release
# key and the enrollment token, and a second run keeps them -> an agent started through the
# image's entry point with compose's agent.conf enrolls with that token -> the admin token
# sees the device -> SIGTERM: the server stops cleanly and modelfleet-health no longer says
# SERVING. Exits 77 (skipped) when PostgreSQL 15, python3-grpcio or python3-yaml is missing.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 SOURCE_DIR SERVER_BIN AGENT_BIN CLI_BIN" >&2
  exit 64
fi
source_dir=$1 server_bin=$2 agent_bin=$3 cli_bin=$4
docker_dir=$source_dir/deploy/docker
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/initdb" ] || { echo "compose_flow_live: SKIPPED: no PostgreSQL 15 in $pg_bin"; exit 77; }
/usr/bin/python3 -c 'import grpc, yaml' 2>/dev/null || { echo "compose_flow_live: SKIPPED: no python3-grpcio or python3-yaml"; exit 77; }

fail() { echo "compose_flow_live: FAIL: $*" >&2; exit 1; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d /tmp/modelfleet-compose-flow-XXXXXX)
chmod 0755 "$work"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
fi
mkdir -p "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
server_pid="" agent_pid=""
cleanup() {
  for pid in $agent_pid $server_pid; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres -A trust >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE modelfleet" >/dev/null

# The compose services' environment (docker-compose.yml), with local paths and ports.
grpc_port=$(free_port)
export MODELFLEET_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/modelfleet"
export MODELFLEET_LOG_FORMAT=json
export PATH="$docker_dir:$(dirname "$server_bin"):$(dirname "$cli_bin"):$PATH"
unset MODELFLEET_TOKEN MODELFLEET_SERVER MODELFLEET_TLS_CA MODELFLEET_CONFIG MODELFLEET_OUTPUT
export XDG_CONFIG_HOME=$work/xdg HOME=$work/home

# The compose server's command and environment, read from docker-compose.yml; what needs MinIO
# or the compose network is replaced by local equivalents (local blob store, loopback port).
/usr/bin/python3 - "$source_dir/deploy/docker-compose.yml" > "$work/server.env" <<'PY'
import shlex, sys, yaml
server = yaml.safe_load(open(sys.argv[1]))["services"]["server"]
local = ("MODELFLEET_DATABASE_URL", "MODELFLEET_LISTEN", "MODELFLEET_BLOB_STORE", "MODELFLEET_CACHE_DIR")
for key, value in server["environment"].items():
    if key.startswith("MODELFLEET_") and key not in local and not key.startswith("MODELFLEET_S3_"):
        print(f"export {key}={shlex.quote(str(value))}")
print("server_args=(" + " ".join(shlex.quote(str(a)) for a in server["command"]) + ")")
PY
server_args=()
serve() {  # runs the server as compose does, in the background
  ( set -a; . "$work/server.env"; set +a
    MODELFLEET_LISTEN=127.0.0.1:$grpc_port MODELFLEET_BLOB_STORE=local MODELFLEET_BLOB_DIR=$work/blobs \
      MODELFLEET_CACHE_DIR=$work/cache exec "$server_bin" "${server_args[@]}" ) 2> "$work/server.log" &
  server_pid=$!
}
. "$work/server.env"
mkdir -p "$work/blobs" "$work/cache"
tables() {
  "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d modelfleet -tAc \
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
}

echo "== compose's serve (${server_args[*]}) leaves an empty database alone: the migrate service migrates"
serve
for _ in $(seq 50); do grep -q "listening on" "$work/server.log" && break; kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
grep -q "listening on" "$work/server.log" || { cat "$work/server.log"; fail "the server as compose runs it did not start"; }
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not exit 0 on SIGTERM"
server_pid=""
[ "$(tables)" = 0 ] || fail "the server as compose runs it migrated by itself ($(tables) tables): the migrate service is not the one migrating"

echo "== migrate"
"$server_bin" migrate 2> "$work/migrate.log" || { cat "$work/migrate.log"; fail "modelfleet-server migrate"; }
[ "$(tables)" -gt 0 ] || fail "modelfleet-server migrate created no tables"

echo "== serve"
serve
for _ in $(seq 150); do
  modelfleet-health --timeout 1 "127.0.0.1:$grpc_port" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fail "the server exited at start"; }
  sleep 0.2
done
modelfleet-health "127.0.0.1:$grpc_port" || { cat "$work/server.log"; fail "modelfleet-health: not SERVING"; }
echo "modelfleet-health: SERVING"

echo "== bootstrap"
export MODELFLEET_SERVER=127.0.0.1:$grpc_port MODELFLEET_INSECURE=true
export MODELFLEET_BOOTSTRAP_DIR=$work/bootstrap MODELFLEET_BOOTSTRAP_KEY_ID=compose-release
mkdir -m 0700 "$MODELFLEET_BOOTSTRAP_DIR"
modelfleet-bootstrap || fail "modelfleet-bootstrap"
for f in admin-token publisher.key publisher.pub enrollment-token; do
  [ -s "$MODELFLEET_BOOTSTRAP_DIR/$f" ] || fail "bootstrap wrote no $f"
done
for f in admin-token publisher.key enrollment-token; do
  [ "$(stat -c %a "$MODELFLEET_BOOTSTRAP_DIR/$f")" = 600 ] || fail "the secret $f is not mode 0600"
done
ls "$MODELFLEET_BOOTSTRAP_DIR" | grep -q '\.tmp$' && fail "bootstrap left temporary files"
sha256sum "$MODELFLEET_BOOTSTRAP_DIR"/* > "$work/first.sums"
modelfleet-bootstrap 2> "$work/second.log" || { cat "$work/second.log"; fail "second modelfleet-bootstrap"; }
sha256sum "$MODELFLEET_BOOTSTRAP_DIR"/* | cmp -s - "$work/first.sums" || fail "a second bootstrap changed its secrets"
[ "$(grep -c ': kept' "$work/second.log")" = 3 ] || { cat "$work/second.log"; fail "a second bootstrap did not keep all three"; }
admin=$(cat "$MODELFLEET_BOOTSTRAP_DIR/admin-token")
MODELFLEET_TOKEN=$admin modelfleet -o json keys list | grep -q '"compose-release"' \
  || fail "the server does not trust the bootstrap's key compose-release"

echo "== agent (image entry point, compose agent.conf)"
mkdir -m 0700 "$work/agent-state"
MODELFLEET_AGENT_BIN=$agent_bin MODELFLEET_AGENT_STATE_DIR=$work/agent-state \
  MODELFLEET_AGENT_ENROLLMENT_TOKEN_FILE=$MODELFLEET_BOOTSTRAP_DIR/enrollment-token \
  modelfleet-agent-entrypoint --config "$docker_dir/agent.conf" --server "127.0.0.1:$grpc_port" \
  --publisher_key "compose-release=$MODELFLEET_BOOTSTRAP_DIR/publisher.pub" \
  --hardware_id mat-0001 --site compose --label room=a --synthetic_seed 1 \
  > "$work/agent.out" 2> "$work/agent.log" &
agent_pid=$!
for _ in $(seq 150); do
  [ -s "$work/agent-state/credential" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; fail "the agent exited"; }
  sleep 0.2
done
[ -s "$work/agent-state/credential" ] || { cat "$work/agent.log"; fail "the agent did not enroll (compose health check)"; }
devices=$(MODELFLEET_TOKEN=$admin modelfleet -o json devices list)
echo "$devices" | /usr/bin/python3 -c '
import json, sys
devices = json.load(sys.stdin)
mine = [d for d in devices if d.get("hardware_id") == "mat-0001"]
assert mine, f"no device mat-0001 in {devices}"
assert "ACCEPTED" in json.dumps(mine[0]).upper(), f"mat-0001 not accepted: {mine[0]}"
print("device mat-0001 enrolled and accepted")' || fail "devices list"
kill -TERM "$agent_pid"
wait "$agent_pid" || fail "the agent did not exit 0 on SIGTERM"
agent_pid=""

echo "== SIGTERM"
kill -TERM "$server_pid"
wait "$server_pid" || { cat "$work/server.log"; fail "the server did not exit 0 on SIGTERM"; }
server_pid=""
if modelfleet-health --timeout 1 "127.0.0.1:$grpc_port" 2>/dev/null; then fail "stopped server still SERVING"; fi
echo "compose_flow_live: 1 passed, 0 failed"
