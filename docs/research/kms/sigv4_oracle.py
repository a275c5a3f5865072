#!/usr/bin/env python3
"""SigV4 test oracle: sign one request with botocore's own signer at a fixed time.

Input (JSON on stdin):
  {"method": "POST", "url": "http://127.0.0.1:15000/",
   "headers": {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"},
   "body": "<utf-8 text>", "access_key": "...", "secret_key": "...", "session_token": null,
   "region": "us-east-1", "service": "kms", "timestamp": "20260101T120000Z"}
Output (JSON on stdout): canonical_request, string_to_sign, signature, and the headers botocore
adds (Authorization, X-Amz-Date, X-Amz-Security-Token when a token is given).
With --send, also sends the signed request and prints the status and body.
"""
import datetime, json, sys, urllib.request
from unittest import mock
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

spec = json.load(sys.stdin)
ts = datetime.datetime.strptime(spec["timestamp"], "%Y%m%dT%H%M%SZ")
creds = Credentials(spec["access_key"], spec["secret_key"], spec.get("session_token"))
body = spec.get("body", "").encode()
req = AWSRequest(method=spec["method"], url=spec["url"], data=body, headers=dict(spec.get("headers", {})))
signer = SigV4Auth(creds, spec["service"], spec["region"])
with mock.patch.object(botocore.auth, "get_current_datetime", return_value=ts):
    signer.add_auth(req)
# Recompute the intermediate strings on a copy without the Authorization header that add_auth
# just added (it would otherwise be folded into the canonical request).
unsigned = AWSRequest(method=req.method, url=req.url, data=body,
                      headers={k: v for k, v in req.headers.items() if k.lower() != "authorization"})
unsigned.context["timestamp"] = spec["timestamp"]
canonical = signer.canonical_request(unsigned)
sts = signer.string_to_sign(unsigned, canonical)
assert signer.signature(sts, unsigned) == req.headers["Authorization"].rsplit("Signature=", 1)[1]
out = {
    "canonical_request": canonical,
    "string_to_sign": sts,
    "signature": req.headers["Authorization"].rsplit("Signature=", 1)[1],
    "headers": {k: v for k, v in req.headers.items()},
}
if "--send" in sys.argv:
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=body, method=spec["method"], headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            out["sent"] = {"status": resp.status, "body": resp.read().decode()}
    except urllib.error.HTTPError as e:
        out["sent"] = {"status": e.code, "body": e.read().decode()}
json.dump(out, sys.stdout, indent=1)
print()
