#!/usr/bin/env bash
# The layering check (scripts/check_layering.py) passes on this tree and fails, naming file and
# rule, on a copy of it with a deliberately wrong include of each kind it guards.
#   usage: check_layering_test.sh SOURCE_DIR
set -u
src=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

run() { python3 "$src/scripts/check_layering.py" "$1" > "$work/out" 2>&1; }

run "$src" || { echo "FAIL: the real tree breaks the table:"; cat "$work/out"; status=1; }

# case name | file to break | include to add | what the message must say
cases=(
  'core includes the gRPC edge|server/registry/registry.cc|#include "grpc/registry_service.h"|server/registry/registry.cc:1: "grpc/registry_service.h": server/registry may include only'
  'core includes grpcpp|client/agent/update/updater.cc|#include <grpcpp/grpcpp.h>|client/agent/update/updater.cc:1: <grpcpp/grpcpp.h>: client/agent/update may not use gRPC'
  'core includes a service header|server/fleet/check_in.cc|#include "modelfleet/v1/fleet.grpc.pb.h"|server/fleet may not use gRPC'
  'libpqxx outside its wrapper|server/fleet/rollout_manager.cc|#include <pqxx/pqxx>|only server/db may include this library'
  'libtorch outside the runtime|client/agent/app/agent.cc|#include <torch/script.h>|only client/agent/runtime may include this library'
  'a lower layer includes a higher one|server/db/pool.cc|#include "fleet/check_in.h"|server/db may include only'
)
for c in "${cases[@]}"; do
  IFS='|' read -r name file include expected <<< "$c"
  rm -rf "$work/tree" && mkdir -p "$work/tree" && cp -r "$src/common" "$src/server" "$src/client" "$work/tree/"
  { echo "$include"; cat "$src/$file"; } > "$work/tree/$file"
  if run "$work/tree"; then
    echo "FAIL ($name): the check passed"; status=1
  elif ! grep -qF "$expected" "$work/out"; then
    echo "FAIL ($name): the message does not say '$expected':"; cat "$work/out"; status=1
  else
    echo "ok ($name)"
  fi
done
exit $status
