#!/bin/bash
# Prints the Debian packages that own the shared libraries the given binaries link against
# directly (their DT_NEEDED entries, resolved by ldd, owners found with dpkg -S), one per
# line, sorted. apt brings in what those libraries need in turn. The runtime images install
# exactly this list, so a library added to the build cannot be forgotten in an image.
#   deploy/docker/runtime-packages.sh build/server/modelfleet-server ...
set -euo pipefail
for binary in "$@"; do
  readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' > /tmp/needed.$$
  ldd "$binary" | awk 'NR == FNR { needed[$1] = 1; next } ($1 in needed) && $3 ~ /^\// { print $3 }' \
    /tmp/needed.$$ -
  rm -f /tmp/needed.$$
done | sort -u | while read -r lib; do
  # Debian 12 is usr-merged: ldd may say /lib/... where dpkg recorded /usr/lib/... or the
  # other way round, and the soname may be a symlink to the file dpkg knows.
  real=$(readlink -f "$lib")
  for candidate in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    if owner=$(dpkg -S "$candidate" 2>/dev/null); then
      echo "${owner%%:*}"
      continue 2
    fi
  done
  echo "runtime-packages.sh: no Debian package owns $lib (needed by $*)" >&2
  exit 1
done | sort -u
