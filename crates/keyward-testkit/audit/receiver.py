"""An HTTP receiver of Keyward's audit sink, for the tests: checks every batch's signature
(HMAC-SHA256 over "t.body", the `keyward-signature` header) with Python's own hmac, and
appends what it took to a file, one JSON object per line.

    python3 receiver.py --port PORT --key KEY --out FILE --mode-file FILE

The mode file says how to answer: `ok` (200), `fail` (503). A batch with a bad signature is
answered 401 and recorded as {"bad_signature": true}.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()


def record(lines):
    with lock, open(args.out, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            with open(args.mode_file, encoding="utf-8") as f:
                mode = f.read().strip()
        except FileNotFoundError:
            mode = "ok"
        header = self.headers.get("keyward-signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        expected = hmac.new(
            args.key.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            record([json.dumps({"bad_signature": True})])
            self.send_response(401)
            self.end_headers()
            return
        if mode == "fail":
            self.send_response(503)
            self.end_headers()
            return
        lines = [l for l in body.decode("utf-8").split("\n") if l]
        for l in lines:
            json.loads(l)
        record(lines)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode-file", required=True)
    args = p.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
