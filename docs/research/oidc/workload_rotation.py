#!/usr/bin/env python3
"""Against a running provider.mjs: (1) client_credentials + resource indicator -> JWT access
token usable as a 'workload token'; (2) key rotation at run time via the test control endpoint,
showing JWKS before/after and which kid signs new tokens; sessions survive the swap."""
import base64, json, sys, subprocess, requests

ISSUER = sys.argv[1]
pad = lambda x: x + "=" * (-len(x) % 4)
dec = lambda seg: json.loads(base64.urlsafe_b64decode(pad(seg)))

def workload_token(resource="https://keyward.test"):
    r = requests.post(f"{ISSUER}/token", auth=("ci-runner", "ci-runner-secret-0123456789abcdef"),
                      data={"grant_type": "client_credentials", "resource": resource,
                            "scope": "keyward:use"}, timeout=5)
    return r.status_code, r.json()

def kids():
    return [k["kid"] for k in requests.get(f"{ISSUER}/jwks", timeout=5).json()["keys"]]

st, tok = workload_token()
print("client_credentials:", st, {k: (v if k != "access_token" else v[:25] + "...") for k, v in tok.items()})
h, p, _ = tok["access_token"].split(".")
print("  header:", dec(h))
print("  claims:", json.dumps(dec(p)))
print("  wrong resource:", workload_token("https://evil.test"))

print("JWKS kids before:", kids())
r = requests.post(f"{ISSUER}/__test/rotate", timeout=5).json()
print("rotate (overlap):", r)
print("JWKS kids after :", kids())
_, tok2 = workload_token()
print("  new token kid:", dec(tok2["access_token"].split(".")[0])["kid"])
# a full browserless code flow after rotation (new ID token kid), same process
out = subprocess.run([sys.executable, __file__.replace("workload_rotation.py", "flow_requests.py"),
                      ISSUER, "bob"], capture_output=True, text=True).stdout
print("  code flow after rotation, id_token header:",
      [l for l in out.splitlines() if l.startswith("id_token header")])
r = requests.post(f"{ISSUER}/__test/rotate?retire=1", timeout=5).json()
print("rotate (retire old):", r, "JWKS now:", kids())
