#!/usr/bin/python3
"""Which folder may include which: the architecture as a table the build enforces.

usage: check_layering.py SOURCE_DIR

Reads every .h/.cc under the folders below and checks each #include against its folder's
row: project headers ("fleet/check_in.h") must start with an allowed prefix, and the
libraries that belong behind one wrapper (gRPC, libpqxx, libcurl, libtorch) may be included
only where the table says. Exits 1 naming every file, line and include that breaks a rule;
CMake runs it as part of every build (target layering_check), so a violation fails the build.
Tests and benchmarks are not checked: they may reach anything.
"""
import os
import re
import sys

# Project headers each folder may include (by prefix). The cores (registry, fleet, auth, db,
# blob, util, the agent's update flow) never see gRPC: they take and return protobuf messages,
# and the gRPC edge (server/grpc, agent/app, the CLI) converts.
ALLOWED = {
    "common": ["modelfleet/"],
    "server/util": ["util/", "modelfleet/"],
    "server/db": ["db/", "modelfleet/"],
    "server/blob": ["blob/", "modelfleet/"],
    "server/metrics": ["metrics/", "util/", "modelfleet/"],
    "server/events": ["events/", "auth/", "db/", "util/", "modelfleet/"],
    "server/auth": ["auth/", "events/", "db/", "util/", "modelfleet/"],
    "server/registry": ["registry/", "auth/", "blob/", "db/", "events/", "util/", "modelfleet/"],
    "server/fleet": ["fleet/", "auth/", "db/", "events/", "util/", "modelfleet/"],
    "server/webhooks": ["webhooks/", "auth/", "db/", "events/", "util/", "modelfleet/"],
    "server/grpc": ["grpc/", "auth/", "events/", "fleet/", "metrics/", "registry/", "util/", "webhooks/", "modelfleet/"],
    # The HTTP edge reaches the services only through gRPC (an in-process channel), so it
    # needs none of the cores: one implementation of every RPC, one authorization table.
    "server/http": ["http/", "auth/", "metrics/", "util/", "modelfleet/"],
    "server/app": ["app/", "grpc/", "http/", "auth/", "blob/", "db/", "events/", "fleet/", "metrics/",
                   "registry/", "util/", "webhooks/", "modelfleet/"],
    "client/common": ["common/", "modelfleet/"],
    "client/cli": ["cli/", "common/", "modelfleet/"],
    "client/devsim": ["devsim/", "common/", "modelfleet/"],
    "client/agent/sensor": ["agent/sensor/", "modelfleet/"],
    "client/agent/runtime": ["agent/runtime/", "modelfleet/"],
    "client/agent/update": ["agent/update/", "agent/runtime/", "modelfleet/"],
    "client/agent/app": ["agent/", "common/", "modelfleet/"],
}

# Folders without gRPC: neither <grpcpp/...> nor generated *.grpc.pb.h service headers.
NO_GRPC = ["common", "server/util", "server/db", "server/blob", "server/auth", "server/registry",
           "server/fleet", "server/metrics", "server/events", "server/webhooks", "client/agent/sensor", "client/agent/runtime", "client/agent/update"]

# Libraries that live behind one wrapper folder each.
WRAPPED = [
    (re.compile(r"^<pqxx/"), ["server/db"]),
    (re.compile(r"^<curl/"), ["server/blob/s3"]),
    (re.compile(r"^<(torch|ATen|c10)/"), ["client/agent/runtime"]),
    (re.compile(r"^<httplib\.h>"), ["server/http", "server/webhooks"]),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"][^>"]+[>"])')


def row_of(relative):
    """The most specific folder of ALLOWED that holds `relative`, or None."""
    best = None
    for folder in ALLOWED:
        if relative.startswith(folder + "/") and (best is None or len(folder) > len(best)):
            best = folder
    return best


def under(relative, folders):
    return any(relative.startswith(f + "/") for f in folders)


def check(root):
    problems = []
    checked = 0
    for top in ("common", "server", "client"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                folder = row_of(relative)
                if folder is None:
                    problems.append("%s: in no folder of the layering table (scripts/check_layering.py)" % relative)
                    continue
                checked += 1
                own_header = relative[len(folder) + 1:].rsplit(".", 1)[0] + ".h"
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(1)
                        name_inside = target[1:-1]
                        where = "%s:%d: %s" % (relative, number, target)
                        if under(relative, NO_GRPC) and (name_inside.startswith("grpcpp/") or
                                                         name_inside.endswith(".grpc.pb.h")):
                            problems.append("%s: %s may not use gRPC (only its edges do)" % (where, folder))
                        for pattern, owners in WRAPPED:
                            if pattern.match(target) and not under(relative, owners):
                                problems.append("%s: only %s may include this library" % (where, " or ".join(owners)))
                        if target.startswith('"') and name_inside != own_header and \
                                not any(name_inside.startswith(p) for p in ALLOWED[folder]):
                            problems.append("%s: %s may include only %s" % (where, folder, ", ".join(ALLOWED[folder])))
    return checked, problems


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    checked, problems = check(sys.argv[1])
    for p in problems:
        print("layering: " + p, file=sys.stderr)
    if problems:
        print("layering: %d violation(s) in %d files; the table is in scripts/check_layering.py" %
              (len(problems), checked), file=sys.stderr)
        return 1
    if checked == 0:
        print("layering: no source files under %s" % sys.argv[1], file=sys.stderr)
        return 1
    print("layering: %d files follow the table" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
