#!/usr/bin/env bash
# Installs everything modelfleet needs to build, test and run on Debian 12, from Debian's
# packages (and s3rver, the S3 peer of the tests, from npm via package-lock.json).
# Idempotent: re-running it on a machine that has everything is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libcurl4-openssl-dev libssl-dev openssl libcpp-httplib-dev prometheus
  libspdlog-dev libcli11-dev libgtest-dev libgmock-dev
  postgresql-15 postgresql-client-15
  python3 python3-grpcio python3-grpc-tools python3-protobuf python3-yaml
  libtorch-dev python3-torch
  ca-certificates
)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian postgresql package starts a cluster on 5432; tests never use it (they start
# their own), so it may stay as it is.
if [ ! -x node_modules/.bin/s3rver ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
