#!/usr/bin/env bash
# The release pipeline CI runs: data set -> train -> quantize -> evaluate and gate -> export and
# manifest -> signed push with the modelfleet CLI. See deploy/release/README.md.
#
#   deploy/release/release.sh --version 1.4.0 --sign-key release.pem --key-id release-2026
#   deploy/release/release.sh --quick --no-push --version 0.1.0 --out /tmp/rel   # artifacts only
#
# Output (--out DIR, default ./release-out; it must not exist or be empty):
#   model.pt       the int8 (QNNPACK) TorchScript model, with the modelfleet_input_shape extra file
#   manifest.json  the modelfleet.v1.Manifest (proto3 JSON) that `--manifest` takes
#   metrics.json   fp32 vs int8 on the held-out split, and the gate's decision
#   push.json      what the server answered (when pushed)
# Everything is built in a hidden staging directory next to DIR and moved into DIR only once the
# gate has passed and every file is complete: a refused or failed run leaves DIR as it was.
#
# Exit codes: 0 released (or built, with --no-push); 2 bad usage; 3 REFUSED by the quality gate
# (int8 accuracy more than --margin points below fp32, below --min-accuracy, or over the latency
# budget); 4 the push failed (the artifacts are in DIR; re-running the push is safe); 1 anything
# else.
#
# Environment: MODELFLEET_SERVER / MODELFLEET_TOKEN / MODELFLEET_TLS_CA (the CLI's connection),
# MODELFLEET_SIGN_KEY / MODELFLEET_KEY_ID (defaults of --sign-key / --key-id), MODELFLEET_CLI
# (default of --cli), MODELFLEET_PYTHON (default /usr/bin/python3, which has Debian's
# python3-torch), and the CI's own variables for the lineage (GIT_COMMIT, BUILD_TAG, BUILD_URL on
# Jenkins; GITHUB_SHA, GITHUB_RUN_ID, ... on GitHub Actions; see pipeline.py `lineage`).
set -euo pipefail

# The CLI subcommand that pushes a version, in ONE place: `versions push` (the CLI with plural
# nouns); the older CLI had `push` with the same options: MODELFLEET_PUSH_COMMAND=push.
PUSH_COMMAND=${MODELFLEET_PUSH_COMMAND:-versions push}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${MODELFLEET_PYTHON:-/usr/bin/python3}

usage() {
  cat <<EOF
usage: $(basename "$0") --version V [options]

  --version V            semantic version of this release (required), e.g. 1.4.0
  --model NAME           model name in the registry (default mat-person)
  --out DIR              where the artifacts go; must not exist or be empty (default ./release-out)
  --quick                tiny data set and 2 epochs: for CI smoke runs and tests (~30 s)
  --seed N               seed of the data set and the training (default 1)
  --epochs N             training epochs (default 12; 2 with --quick)
  --margin POINTS        most the int8 accuracy may be below fp32, in percentage points (default 2)
  --min-accuracy F       int8 accuracy floor, 0..1 (default 0.9; 0.75 with --quick)
  --latency-budget-ms MS p50 latency per frame the int8 model must meet, and the self-test's
                         budget on the device (default 20)
  --tolerance T          self-test tolerance per output probability (default 0.02)
  --parent-version V     lineage: the version this one replaces
  --version-counter N    anti-rollback counter (default: major*1000000 + minor*1000 + patch)
  --broken-self-test     a deliberately broken release: its manifest's reference output is one
                         the model does not give, so it fails the agent's self-test (demo)
  --no-push              stop after building the artifacts in --out
  --cli PATH             the modelfleet CLI (default \$MODELFLEET_CLI or modelfleet in PATH)
  --sign-key PEM         Ed25519 private key to sign the manifest (default \$MODELFLEET_SIGN_KEY)
  --key-id ID            its key id on the server (default \$MODELFLEET_KEY_ID)
  -h, --help             this help
EOF
}

die_usage() {
  echo "release.sh: $*" >&2
  echo "release.sh: see --help" >&2
  exit 2
}

version="" model="mat-person" out="release-out" quick=0 seed=1 epochs="" margin=2
min_accuracy="" latency_budget=20 tolerance=0.02 parent_version="" version_counter="" broken=0 push=1
cli=${MODELFLEET_CLI:-modelfleet} sign_key=${MODELFLEET_SIGN_KEY:-} key_id=${MODELFLEET_KEY_ID:-}

need_value() { [[ $# -ge 2 && -n $2 ]] || die_usage "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --version) need_value "$@"; version=$2; shift 2 ;;
    --model) need_value "$@"; model=$2; shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --seed) need_value "$@"; seed=$2; shift 2 ;;
    --epochs) need_value "$@"; epochs=$2; shift 2 ;;
    --margin) need_value "$@"; margin=$2; shift 2 ;;
    --min-accuracy) need_value "$@"; min_accuracy=$2; shift 2 ;;
    --latency-budget-ms) need_value "$@"; latency_budget=$2; shift 2 ;;
    --tolerance) need_value "$@"; tolerance=$2; shift 2 ;;
    --parent-version) need_value "$@"; parent_version=$2; shift 2 ;;
    --version-counter) need_value "$@"; version_counter=$2; shift 2 ;;
    --broken-self-test) broken=1; shift ;;
    --no-push) push=0; shift ;;
    --cli) need_value "$@"; cli=$2; shift 2 ;;
    --sign-key) need_value "$@"; sign_key=$2; shift 2 ;;
    --key-id) need_value "$@"; key_id=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
  esac
done

# ---- check everything before doing anything ----------------------------------------------------
semver='^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
number='^-?[0-9]+([.][0-9]+)?$'
[[ -n $version ]] || die_usage "--version is required (e.g. --version 1.4.0)"
[[ $version =~ $semver ]] || die_usage "--version '$version' is not a semantic version (e.g. 1.4.0)"
[[ -z $parent_version || $parent_version =~ $semver ]] ||
  die_usage "--parent-version '$parent_version' is not a semantic version"
[[ $model =~ ^[a-z0-9][a-z0-9._-]{0,62}$ ]] || die_usage "--model '$model' must match [a-z0-9][a-z0-9._-]{0,62}"
[[ -z $version_counter || $version_counter =~ ^[0-9]+$ ]] ||
  die_usage "--version-counter '$version_counter' must be a non-negative integer"
[[ $seed =~ ^[0-9]+$ ]] || die_usage "--seed '$seed' must be a non-negative integer"
[[ -z $epochs || $epochs =~ ^[1-9][0-9]*$ ]] || die_usage "--epochs '$epochs' must be a positive integer"
for pair in "margin:$margin" "min-accuracy:${min_accuracy:-0}" "latency-budget-ms:$latency_budget" \
            "tolerance:$tolerance"; do
  [[ ${pair#*:} =~ $number ]] || die_usage "--${pair%%:*} '${pair#*:}' is not a number"
done
if [[ $quick == 1 ]]; then
  epochs=${epochs:-2} min_accuracy=${min_accuracy:-0.75} latency_frames=100 quick_flag=(--quick)
else
  epochs=${epochs:-12} min_accuracy=${min_accuracy:-0.9} latency_frames=300 quick_flag=()
fi
if [[ $push == 1 ]]; then
  [[ -n $sign_key ]] || die_usage "pushing needs --sign-key (releases are signed; or --no-push)"
  [[ -r $sign_key ]] || die_usage "--sign-key '$sign_key' is not a readable file"
  [[ -n $key_id ]] || die_usage "pushing needs --key-id (the id the server knows --sign-key by)"
  command -v "$cli" >/dev/null || die_usage "the modelfleet CLI '$cli' was not found (--cli PATH)"
fi
if [[ -e $out && ! -d $out ]]; then die_usage "--out '$out' exists and is not a directory"; fi
if [[ -d $out && -n $(ls -A "$out") ]]; then
  die_usage "--out '$out' is not empty (a release directory is written once; pick a new one)"
fi
[[ -x $python ]] || die_usage "$python not found (install Debian's python3-torch, or set MODELFLEET_PYTHON)"
"$python" -c 'import torch' 2>/dev/null || die_usage "$python cannot import torch (apt-get install python3-torch)"

# ---- stage everything next to --out, move it in only when complete ------------------------------
parent=$(dirname "$out")
mkdir -p "$parent"
stage=$(mktemp -d "$parent/.release-$(basename "$out").XXXXXX")
cleanup() { rm -rf "$stage"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
work=$stage/work
mkdir -p "$work" "$stage/out"

started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

step "dataset"
"$python" "$here/dataset.py" --out "$work/dataset.pt" --seed "$seed" "${quick_flag[@]}"

step "train (fp32, $epochs epochs)"
"$python" "$here/pipeline.py" train --data "$work/dataset.pt" --work "$work" --epochs "$epochs" --seed "$seed"

step "quantize (post-training static, int8, QNNPACK)"
"$python" "$here/pipeline.py" quantize --data "$work/dataset.pt" --work "$work"

step "evaluate fp32 vs int8, and the gate"
gate=0
"$python" "$here/pipeline.py" evaluate --data "$work/dataset.pt" --work "$work" --margin "$margin" \
  --min-accuracy "$min_accuracy" --latency-budget-ms "$latency_budget" \
  --latency-frames "$latency_frames" || gate=$?
if [[ $gate == 3 ]]; then
  echo "release.sh: RELEASE REFUSED by the quality gate; nothing was written to $out or pushed" >&2
  exit 3
elif [[ $gate != 0 ]]; then
  echo "release.sh: the evaluation failed (exit $gate)" >&2
  exit 1
fi

step "export and manifest"
manifest_flags=(--model-name "$model" --version "$version" --tolerance "$tolerance"
                --latency-budget-ms "$latency_budget")
[[ -n $parent_version ]] && manifest_flags+=(--parent-version "$parent_version")
[[ -n $version_counter ]] && manifest_flags+=(--version-counter "$version_counter")
[[ $broken == 1 ]] && manifest_flags+=(--broken-self-test)
"$python" "$here/pipeline.py" manifest --data "$work/dataset.pt" --work "$work" "${manifest_flags[@]}"

for f in model.pt manifest.json metrics.json; do mv "$work/$f" "$stage/out/$f"; done
if [[ -d $out ]]; then rmdir "$out"; fi
mv "$stage/out" "$out"
echo "artifacts: $(cd "$out" && pwd)/{model.pt,manifest.json,metrics.json}"

if [[ $push == 0 ]]; then
  step "done (--no-push: not pushed)"
  exit 0
fi

step "push $model $version (signed with key $key_id)"
# The manifest carries the metrics, labels, lineage and self-test; the CLI adds the digest and
# size of the file it streams, signs, validates and pushes (idempotent: safe to re-run).
read -r -a push_words <<<"$PUSH_COMMAND"
if ! "$cli" "${push_words[@]}" "$model" "$version" "$out/model.pt" --manifest "$out/manifest.json" \
     --sign-key "$sign_key" --key-id "$key_id" -o json >"$out/push.json.tmp"; then
  rm -f "$out/push.json.tmp"
  echo "release.sh: the push of $model $version failed; the artifacts are in $out (re-run the push)" >&2
  exit 4
fi
mv "$out/push.json.tmp" "$out/push.json"
step "released $model $version"
