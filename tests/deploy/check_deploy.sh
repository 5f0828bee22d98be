#!/usr/bin/env bash
# Offline checks of deploy/ (docker compose, Kubernetes, Dockerfile, examples) against the built
# binaries; see check_deploy.py for what is asserted. CTest runs it twice (tests/e2e/CMakeLists.txt):
#
#   check_deploy.sh SOURCE_DIR SERVER_BIN AGENT_BIN CLI_BIN
#       the files as they are must pass.
#   check_deploy.sh --expect-drift-detected SOURCE_DIR SERVER_BIN AGENT_BIN CLI_BIN
#       copies deploy/ and breaks it in one way at a time (a renamed variable, flag, config key
#       or CLI command, a missing probe, a root container); each must make the check fail and
#       name what broke: the check cannot pass by checking nothing.
#
# Needs /usr/bin/python3 with PyYAML (Debian: python3-yaml); exits 77 (CTest: skipped) without.
# Uses `kubectl kustomize` and `docker compose config` when they are installed.
set -euo pipefail

mode=check
if [ "${1:-}" = "--expect-drift-detected" ]; then
  mode=drift
  shift
fi
if [ $# -ne 4 ]; then
  echo "usage: $0 [--expect-drift-detected] SOURCE_DIR SERVER_BIN AGENT_BIN CLI_BIN" >&2
  exit 64
fi
source_dir=$1 server_bin=$2 agent_bin=$3 cli_bin=$4
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
if ! "$python" -c 'import yaml' 2>/dev/null; then
  echo "check_deploy: SKIPPED: $python has no PyYAML (apt-get install python3-yaml)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs every check on the deploy/ directory under $1; prints the checker's output.
run_checks() {
  local root=$1 status=0
  local rendered=()
  for script in "$root"/deploy/docker/modelfleet-bootstrap "$root"/deploy/docker/modelfleet-agent-entrypoint; do
    sh -n "$script" || { echo "FAIL $script: sh -n"; status=1; }
  done
  bash -n "$root/deploy/docker/runtime-packages.sh" || { echo "FAIL runtime-packages.sh: bash -n"; status=1; }
  # A syntax check that writes nothing (py_compile left a __pycache__ in the source tree).
  "$python" -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$root/deploy/docker/modelfleet-health" 2>&1 ||
    { echo "FAIL modelfleet-health: syntax"; status=1; }
  if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize "$root/deploy/k8s" > "$work/rendered.yaml" 2> "$work/kustomize.err"; then
      rendered=(--rendered-k8s "$work/rendered.yaml")
    else
      echo "FAIL kubectl kustomize deploy/k8s: $(cat "$work/kustomize.err")"
      status=1
    fi
  else
    echo "note: no kubectl; the k8s checks read the manifests without kustomize"
  fi
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$root/deploy/docker-compose.yml" config -q 2>&1 || { echo "FAIL docker compose config"; status=1; }
  else
    echo "note: no docker compose plugin; the compose file is checked by check_deploy.py only"
  fi
  "$python" "$here/check_deploy.py" --source-dir "$root" --server-bin "$server_bin" --agent-bin "$agent_bin" \
    --cli-bin "$cli_bin" "${rendered[@]}" || status=1
  return $status
}

if [ "$mode" = check ]; then
  run_checks "$source_dir"
  exit $?
fi

# ---- drift detection: each mutation (file | perl substitution | what the failure must name)
mutations=(
  "deploy/docker-compose.yml|s/MODELFLEET_S3_BUCKET:/MODELFLEET_S3_BUKET:/|MODELFLEET_S3_BUKET"
  "deploy/docker-compose.yml|s/\"--hardware_id\"/\"--hardware-identity\"/|hardware_identity"
  "deploy/docker/agent.conf|s/^frame_rate_hz =/frame_rate =/m|'frame_rate'"
  "deploy/k8s/deployment.yaml|s/readinessProbe:/readinessGate:/|readinessProbe"
  "deploy/k8s/deployment.yaml|s/path: \/readyz/path: \/ready/|readinessProbe asks /ready"
  "deploy/k8s/configmap.yaml|s/MODELFLEET_HTTP_LISTEN: \"0.0.0.0:8080\"/MODELFLEET_HTTP_LISTEN: \"0.0.0.0:9090\"/|HTTP port 9090"
  "deploy/k8s/deployment.yaml|s/runAsNonRoot: true/runAsNonRoot: false/g|runAsNonRoot"
  "deploy/k8s/configmap.yaml|s/MODELFLEET_LOG_FORMAT:/MODELFLEET_LOGFORMAT:/|MODELFLEET_LOGFORMAT"
  "deploy/docker/modelfleet-bootstrap|s/ enroll-tokens create / enroll-token create /g|enroll-token create"
  "deploy/docker/Dockerfile|s/^USER 10001:10001/USER root/m|runs as root"
)
failed=0
for m in "${mutations[@]}"; do
  IFS='|' read -r file expr needle <<< "$m"
  rm -rf "$work/copy" && mkdir -p "$work/copy" && cp -r "$source_dir/deploy" "$work/copy/"
  perl -0pi -e "$expr" "$work/copy/$file"
  if cmp -s "$source_dir/$file" "$work/copy/$file"; then
    echo "FAIL mutation '$expr' changed nothing in $file: update this test with the file"
    failed=$((failed + 1))
    continue
  fi
  if run_checks "$work/copy" > "$work/out" 2>&1; then
    echo "FAIL $file with '$expr': the checks passed"
    failed=$((failed + 1))
  elif ! grep -F -- "$needle" "$work/out" | grep -q '^FAIL'; then
    echo "FAIL $file with '$expr': the checks failed, but no failure names '$needle':"
    sed 's/^/    /' "$work/out"
    failed=$((failed + 1))
  else
    echo "ok   $file with '$expr': $(grep -F -- "$needle" "$work/out" | grep -m1 '^FAIL')"
  fi
done
echo "check_deploy drift: $((${#mutations[@]} - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
