#!/usr/bin/python3
"""A webhook receiver for webhooks_e2e_test: verifies every request's signature and records it.

usage: webhook_receiver.py PORT SECRET_FILE RECORD_FILE FAIL_FIRST

Listens on 127.0.0.1:PORT (0: any free port) and prints "port N". For each POST it checks
Modelfleet-Signature = "v1=" + hex HMAC-SHA256(secret, timestamp + "." + body) with the secret
read from SECRET_FILE (503 while that file does not exist yet), that the timestamp is recent
and that Modelfleet-Event-Id and Idempotency-Key name the body's event id. A request that fails
a check is recorded as "BAD <why>" and answered 401. The first FAIL_FIRST verified requests are
answered 500 (a receiver that is down for a while); every other one is recorded as
"<event id> <type>" and answered 200.
"""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

port, secret_file, record_file, fail_first = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
verified = [0]


def record(line):
    with lock, open(record_file, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not os.path.exists(secret_file):
            return self.reply(503)
        with open(secret_file, "rb") as f:
            secret = f.read().strip()
        timestamp = self.headers.get("Modelfleet-Timestamp", "")
        signature = self.headers.get("Modelfleet-Signature", "")
        expected = "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        event_id = str(event.get("id", "0"))
        why = None
        if not hmac.compare_digest(signature, expected):
            why = "signature"
        elif not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            why = "timestamp"
        elif self.headers.get("Modelfleet-Event-Id") != event_id or self.headers.get("Idempotency-Key") != event_id:
            why = "event id header"
        elif self.headers.get("Content-Type") != "application/json":
            why = "content type"
        if why:
            record("BAD %s %s" % (why, event_id))
            return self.reply(401)
        with lock:
            verified[0] += 1
            fail = verified[0] <= fail_first
        if fail:
            return self.reply(500)
        record("%s %s" % (event_id, event.get("type", "")))
        self.reply(200)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("port %d" % server.server_address[1], flush=True)
server.serve_forever()
