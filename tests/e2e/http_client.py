#!/usr/bin/python3
"""Drives modelfleet-server's HTTP face with Python's http.client, a client this repository
did not write: the Connect JSON API (list, create and watch a rollout, pause it, read devices),
its error replies, the role x route matrix, artifact downloads with Range, and the probes.

usage: http_client.py CONFIG.json
CONFIG: {"http": "127.0.0.1:PORT", "tokens": {"admin": ..., "publisher": ..., "viewer": ...,
         "device": ...}, "model": NAME, "versions": {VERSION: SHA256}, "devices": N,
         "roles": {PROCEDURE_PATH: [ROLE, ...]}}   (roles: auth/method_roles.cc, via the test)
Prints one line per check and "ALL OK" at the end; exits 1 at the first failed check.
"""
import base64
import hashlib
import http.client
import json
import re
import subprocess
import sys
import time

CONFIG = json.load(open(sys.argv[1]))
HOST, PORT = CONFIG["http"].rsplit(":", 1)
TOKENS = CONFIG["tokens"]


def fail(message):
    print("FAILED: " + message)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print("ok: " + message)


def request(method, path, body=None, headers=None, token=None):
    """(status, headers as a lower-case dict, body bytes)."""
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=30)
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=body, headers=all_headers)
    resp = conn.getresponse()
    data = resp.read()
    reply_headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, reply_headers, data


def call(procedure, message, token=TOKENS["admin"], raw_body=None, headers=None):
    """A Connect unary JSON call: (HTTP status, parsed JSON body, headers)."""
    h = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    h.update(headers or {})
    body = raw_body if raw_body is not None else json.dumps(message).encode()
    status, reply_headers, data = request("POST", "/modelfleet.v1." + procedure, body, h, token)
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        fail("%s: body is not JSON: %r" % (procedure, data[:200]))
    return status, parsed, reply_headers


def ok(procedure, message, token=TOKENS["admin"]):
    status, body, _ = call(procedure, message, token)
    if status != 200:
        fail("%s %s: HTTP %d %s" % (procedure, json.dumps(message), status, body))
    return body


def expect_error(what, status, body, http_status, code, *words):
    check(status == http_status and body.get("code") == code and all(w in body.get("message", "") for w in words),
          "%s -> %d %s %s (got %d %s)" % (what, http_status, code, list(words), status, body))


model = CONFIG["model"]
versions = CONFIG["versions"]

# --- Probes -----------------------------------------------------------------------------------
status, _, data = request("GET", "/healthz")
check(status == 200, "GET /healthz is 200")
status, _, data = request("GET", "/readyz")
check(status == 200 and data.strip() == b"ready", "GET /readyz is 200 ready")

# --- Prometheus metrics (the server runs with --metrics-require-token) -------------------------
def scrape():
    status, headers, data = request("GET", "/metrics", token=TOKENS["viewer"])
    if status != 200 or not headers.get("content-type", "").startswith("text/plain; version=0.0.4"):
        fail("GET /metrics as viewer: %d %s" % (status, headers))
    text = data.decode()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    if checked.returncode != 0:
        fail("promtool check metrics refused /metrics: %s %s" % (checked.stdout, checked.stderr))
    return text


def sample(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    if not found:
        fail("/metrics has no %s %s" % (name, labels))
    return total


status, _, data = request("GET", "/metrics")
check(status == 401, "GET /metrics without a token -> 401 (--metrics-require-token)")
status, _, data = request("GET", "/metrics", token=TOKENS["device"])
check(status == 403, "GET /metrics as a device -> 403")
metrics_before = scrape()
check(True, "promtool check metrics accepts /metrics (%d lines)" % len(metrics_before.splitlines()))

# --- The registry through the JSON API ---------------------------------------------------------
models = ok("RegistryService/ListModels", {}, TOKENS["viewer"])
check(any(m["name"] == model for m in models.get("models", [])), "ListModels (viewer) lists " + model)
listed = ok("RegistryService/ListVersions", {"model": model}, TOKENS["viewer"])
got = {v["manifest"]["version"]: v["manifest"]["digest"] for v in listed.get("versions", [])}
check(got == versions, "ListVersions gives every pushed version with its digest: %s" % got)
one = ok("RegistryService/GetVersion", {"ref": {"model": model, "version": "1.0.0"}}, TOKENS["viewer"])
check(one["manifest"]["sizeBytes"] == str(40 << 10), "GetVersion: protobuf JSON mapping (uint64 as a string)")

# --- Errors in the convention's format ---------------------------------------------------------
expect_error("no token", *call("RegistryService/ListModels", {}, token=None)[:2], 401, "unauthenticated")
expect_error("unknown token", *call("RegistryService/ListModels", {}, token="nope")[:2], 401, "unauthenticated")
expect_error("viewer creating a rollout", *call("FleetService/CreateRollout", {"model": model}, TOKENS["viewer"])[:2],
             403, "permission_denied", "viewer")
expect_error("malformed JSON", *call("RegistryService/ListVersions", None, raw_body=b"{\"model\":")[:2],
             400, "invalid_argument", "ListVersionsRequest")
expect_error("unknown field", *call("RegistryService/ListVersions", {"model": model, "colour": "red"})[:2],
             400, "invalid_argument", "colour")
expect_error("wrong type", *call("RegistryService/ListVersions", {"model": model, "pageSize": "many"})[:2],
             400, "invalid_argument")
expect_error("body that is not an object", *call("RegistryService/ListVersions", None, raw_body=b"[1,2]")[:2],
             400, "invalid_argument")
expect_error("unknown model", *call("RegistryService/GetModel", {"name": "no-such-model"})[:2], 404, "not_found")
status, body, headers = call("RegistryService/CreateModel", {"model": {"name": "Bad Name!"}})
expect_error("invalid name", status, body, 400, "invalid_argument")
details = body.get("details", [])
check(len(details) == 1 and details[0]["type"] == "google.rpc.BadRequest" and
      details[0]["debug"]["fieldViolations"][0]["field"] == "model.name" and
      b"model.name" in base64.b64decode(details[0]["value"]) and
      headers.get("trailer-modelfleet-field") == "model.name",
      "a field violation travels as a BadRequest detail and a trailer-modelfleet-field header: %s" % body)
expect_error("Connect-Protocol-Version 2",
             *call("RegistryService/ListModels", {}, headers={"Connect-Protocol-Version": "2"})[:2],
             400, "invalid_argument", "connect-protocol-version")
expect_error("malformed Connect-Timeout-Ms",
             *call("RegistryService/ListModels", {}, headers={"Connect-Timeout-Ms": "soon"})[:2],
             400, "invalid_argument", "connect-timeout-ms")
status, _, data = request("POST", "/modelfleet.v1.RegistryService/ListModels", b"{}",
                          {"Content-Type": "text/plain"}, TOKENS["admin"])
check(status == 415 and json.loads(data)["code"] == "invalid_argument", "text/plain body -> 415")
status, _, data = request("POST", "/modelfleet.v1.RegistryService/NoSuchMethod", b"{}",
                          {"Content-Type": "application/json"}, TOKENS["admin"])
check(status == 404 and json.loads(data)["code"] == "unimplemented", "unknown procedure -> 404 unimplemented")
status, headers, data = request("GET", "/modelfleet.v1.RegistryService/ListModels", None, {}, TOKENS["admin"])
check(status == 405 and headers.get("allow") == "POST", "GET on a procedure -> 405, Allow: POST")
status, _, data = request("POST", "/modelfleet.v1.RegistryService/PushVersion", b"{}",
                          {"Content-Type": "application/json"}, TOKENS["admin"])
check(status == 404, "a client-streaming method is not a route (uploads stay on gRPC)")
status, _, data = request("GET", "/no/such/route")
check(status == 404 and json.loads(data)["code"] == "unimplemented", "unknown route -> 404 with a Connect body")
status, _, data = request("POST", "/modelfleet.v1.RegistryService/ListModels", b"{" + b" " * (5 << 20) + b"}",
                          {"Content-Type": "application/json"}, TOKENS["admin"])
check(status == 413, "a 5 MiB body -> 413")
status, headers, data = request("POST", "/modelfleet.v1.RegistryService/ListModels", b"",
                                {"Content-Type": "application/proto"}, TOKENS["viewer"])
check(status == 200 and headers.get("content-type") == "application/proto" and model.encode() in data,
      "application/proto: the binary codec passes through")

# --- The role x route matrix -------------------------------------------------------------------
# Every procedure, called with an empty message by every role: a role the table allows is
# never refused for its role (the call may fail on the empty message: 400, 404, ...), a role it
# does not allow gets 403. Mutations with an empty message change nothing (they fail validation).
denied = allowed = 0
for path, roles in sorted(CONFIG["roles"].items()):
    for role, token in TOKENS.items():
        status, body, _ = call(path[len("/modelfleet.v1."):], {}, token)
        if role in roles:
            if status in (401, 403):
                fail("%s as %s: allowed by the table, refused over HTTP: %d %s" % (path, role, status, body))
            allowed += 1
        else:
            if status != 403 or body.get("code") != "permission_denied":
                fail("%s as %s: not allowed by the table, got %d %s" % (path, role, status, body))
            denied += 1
check(denied > 0 and allowed > 0, "role x route matrix: %d allowed, %d denied as the table says" % (allowed, denied))

# --- Artifact downloads ------------------------------------------------------------------------
artifact = "/v1/models/%s/versions/1.0.0/artifact" % model
status, headers, data = request("GET", artifact, token=TOKENS["viewer"])
check(status == 200 and hashlib.sha256(data).hexdigest() == versions["1.0.0"] and
      headers.get("etag") == '"%s"' % versions["1.0.0"] and headers.get("accept-ranges") == "bytes",
      "GET artifact: 200, the digest's bytes, ETag and Accept-Ranges")
status, headers, part = request("GET", artifact, headers={"Range": "bytes=1000-30000"}, token=TOKENS["viewer"])
check(status == 206 and part == data[1000:30001] and headers.get("content-range") == "bytes 1000-30000/%d" % len(data),
      "Range bytes=1000-30000 -> 206 with exactly those bytes and Content-Range")
status, headers, part = request("GET", artifact, headers={"Range": "bytes=40000-99999"}, token=TOKENS["viewer"])
check(status == 206 and part == data[40000:] and
      headers.get("content-range") == "bytes 40000-%d/%d" % (len(data) - 1, len(data)),
      "a range that runs past the end is cut at the end")
status, headers, part = request("GET", artifact, headers={"Range": "bytes=0-9,100-109"}, token=TOKENS["viewer"])
check(status == 206 and headers.get("content-type", "").startswith("multipart/byteranges") and
      data[0:10] in part and data[100:110] in part, "two ranges -> multipart/byteranges")
status, headers, part = request("GET", artifact, headers={"Range": "bytes=-100"}, token=TOKENS["viewer"])
check(status == 206 and part == data[-100:], "suffix range bytes=-100")
status, headers, part = request("GET", artifact, headers={"Range": "bytes=%d-" % len(data)}, token=TOKENS["viewer"])
check(status == 416 and headers.get("content-range") == "bytes */%d" % len(data) and
      json.loads(part)["code"] == "out_of_range", "a range past the end -> 416 (got %d %s %r)" % (status, headers, part))
status, _, part = request("GET", "/v1/models/%s/aliases/nope/artifact" % model, token=TOKENS["viewer"])
check(status == 404, "unknown alias -> 404")
status, _, part = request("GET", artifact)
check(status == 401, "artifact without a token -> 401")

# --- A rollout: create, watch, pause, read devices ---------------------------------------------
rollout = ok("FleetService/CreateRollout", {
    "model": model, "version": "1.1.0", "target": "*",
    "stages": [{"percent": 50, "successThreshold": 1.0}, {"percent": 100, "successThreshold": 1.0}]})
rid = rollout["rolloutId"]
check(rollout["state"] in ("ROLLOUT_STATE_QUEUED", "ROLLOUT_STATE_RUNNING"), "CreateRollout: %s %s" % (rid, rollout["state"]))
deadline = time.time() + 60
seen = None
while time.time() < deadline:
    seen = ok("FleetService/GetRollout", {"rolloutId": rid}, TOKENS["viewer"])
    if int(seen.get("progress", {}).get("activated", 0)) >= 1:
        break
    time.sleep(0.3)
check(int(seen.get("progress", {}).get("activated", 0)) >= 1,
      "watching GetRollout: devices activate the new version (%s)" % seen.get("progress"))
paused = ok("FleetService/PauseRollout", {"rolloutId": rid, "reason": "checked over HTTP"})
check(paused["state"] == "ROLLOUT_STATE_PAUSED" and paused.get("stateReason", "").find("checked over HTTP") >= 0,
      "PauseRollout: PAUSED with the reason")
again = ok("FleetService/GetRollout", {"rolloutId": rid}, TOKENS["publisher"])
check(again["state"] == "ROLLOUT_STATE_PAUSED", "GetRollout (publisher) reads PAUSED")
expect_error("pausing a paused rollout", *call("FleetService/PauseRollout", {"rolloutId": rid})[:2],
             400, "failed_precondition")
devices = ok("FleetService/ListDevices", {"filter": 'site = "berlin"'}, TOKENS["viewer"])
check(len(devices.get("devices", [])) == (CONFIG["devices"] + 1) // 2, "ListDevices with a selector: the berlin mats")
everyone = ok("FleetService/ListDevices", {}, TOKENS["viewer"])
check(len(everyone.get("devices", [])) == CONFIG["devices"], "ListDevices: every mat")
first = everyone["devices"][0]
device = ok("FleetService/GetDevice", {"deviceId": first["deviceId"]}, TOKENS["viewer"])
check(device["deviceId"] == first["deviceId"], "GetDevice " + first["deviceId"])
expect_error("bad selector", *call("FleetService/ListDevices", {"filter": "site ="}, TOKENS["viewer"])[:2],
             400, "invalid_argument")
aborted = ok("FleetService/AbortRollout", {"rolloutId": rid, "reason": "done"})
check(aborted["state"] == "ROLLOUT_STATE_ABORTED", "AbortRollout: ABORTED")

# --- Counters moved while the mats checked in and this client called ---------------------------
metrics_after = scrape()
for name, labels in (("modelfleet_check_ins_total", {}),
                     ("modelfleet_grpc_server_handled_total", {"method": "ListVersions", "code": "OK"}),
                     ("modelfleet_grpc_server_handled_total", {"method": "CreateRollout", "code": "PERMISSION_DENIED"}),
                     ("modelfleet_grpc_server_handling_seconds_count", {"method": "CheckIn"})):
    before = sample(metrics_before, name, **labels) if name in metrics_before and \
        all('%s="%s"' % kv in metrics_before for kv in labels.items()) else 0.0
    after = sample(metrics_after, name, **labels)
    check(after > before, "%s%s moved: %g -> %g" % (name, labels, before, after))
check(sample(metrics_after, "modelfleet_fleet_devices", admission="ACCEPTED") == CONFIG["devices"],
      "modelfleet_fleet_devices{admission=\"ACCEPTED\"} counts the mats")
check(sample(metrics_after, "modelfleet_rollout_controller_leader") == 1, "this replica leads the controller")

# --- Events: Server-Sent Events, resumed with Last-Event-ID ------------------------------------
def sse(query, token, last_event_id=None, want=1, timeout=20):
    """Reads events from GET /v1/events?query until `want` arrived; [(id, event)] and status."""
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=timeout)
    headers = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("GET", "/v1/events?" + query, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        body = resp.read()
        conn.close()
        return resp.status, json.loads(body), []
    events, frame_id, data = [], None, None
    deadline = time.time() + timeout
    while len(events) < want and time.time() < deadline:
        line = resp.fp.readline().decode()
        if line == "":
            break
        line = line.rstrip("\n")
        if line.startswith("id: "):
            frame_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            if int(data["id"]) != frame_id:
                fail("SSE frame id %s differs from its event's id %s" % (frame_id, data["id"]))
            events.append((frame_id, data))
            frame_id, data = None, None
    conn.close()  # hangs up mid-stream: the server must notice and let go
    return 200, None, events

query = "type=rollout.*&subject_kind=rollout&subject_id=" + rid
everything = ok("EventService/ListEvents", {"filter": {"types": ["rollout.*"], "subjectKind": "rollout",
                                                       "subjectId": rid}}, TOKENS["viewer"])["events"]
types = [e["type"] for e in everything]
check("rollout.created" in types and "rollout.paused" in types and "rollout.aborted" in types,
      "ListEvents (JSON) has the rollout's created, paused and aborted events: %s" % types)
status, _, first = sse(query + "&after_id=0", TOKENS["viewer"], want=2)
check(status == 200 and [i for i, _ in first] == [int(e["id"]) for e in everything[:2]],
      "SSE from after_id=0 streams the first two events, then the client hangs up")
status, _, rest = sse(query, TOKENS["viewer"], last_event_id=first[-1][0], want=len(everything) - 2)
check([i for i, _ in first + rest] == [int(e["id"]) for e in everything],
      "reconnecting with Last-Event-ID %d misses nothing and repeats nothing: %s" % (first[-1][0], [i for i, _ in rest]))
check(rest[-1][1]["type"] == "rollout.aborted" and rest[-1][1]["subjectId"] == rid, "the last SSE event is the abort")
status, body, _ = sse(query, TOKENS["device"])
check(status == 403 and body["code"] == "permission_denied", "a device may not read events: 403")
status, body, _ = sse(query, TOKENS["viewer"], last_event_id="yesterday")
check(status == 400 and body["code"] == "invalid_argument", "a malformed Last-Event-ID: 400")
status, body, _ = sse("type=", "nope")
check(status == 401, "SSE with an unknown token: 401")
print("ALL OK")
