#!/usr/bin/env python3
"""Full OIDC authorization-code + PKCE flow against oidc-provider's devInteractions,
driven by plain HTTP form posts (python requests). No browser, no RP server needed:
the redirect to the RP callback is caught from the Location header.

usage: flow_requests.py ISSUER [USER] [RP_PORT]
prints the callback query, the token response and the decoded ID-token claims;
with --code-only prints just `code verifier nonce` for the Rust probe to redeem.
"""
import base64, hashlib, json, re, secrets, sys, urllib.parse as up
import requests

args = [a for a in sys.argv[1:] if not a.startswith("--")]
CODE_ONLY = "--code-only" in sys.argv
ISSUER = args[0]
USER = args[1] if len(args) > 1 else "alice"
RP_PORT = args[2] if len(args) > 2 else "8089"
CLIENT_ID, CLIENT_SECRET = "keyward-console", "console-secret-0123456789abcdef"
REDIRECT = f"http://127.0.0.1:{RP_PORT}/ui/oidc/callback"

def log(*a):
    if not CODE_ONLY:
        print(*a)

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

disc = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=5).json()
verifier = b64u(secrets.token_bytes(32))
challenge = b64u(hashlib.sha256(verifier.encode()).digest())
state, nonce = b64u(secrets.token_bytes(16)), b64u(secrets.token_bytes(16))
auth = disc["authorization_endpoint"] + "?" + up.urlencode({
    "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
    "scope": "openid email groups", "state": state, "nonce": nonce,
    "code_challenge": challenge, "code_challenge_method": "S256"})

s = requests.Session()
url = auth
for hop in range(12):
    r = s.get(url, allow_redirects=False, timeout=5)
    if r.status_code in (302, 303):
        url = up.urljoin(url, r.headers["location"])
        log(f"  {hop}: {r.status_code} -> {url[:110]}")
        if url.startswith(REDIRECT):
            break
        continue
    html = r.text
    action = up.urljoin(url, re.search(r'<form[^>]*action="([^"]+)"', html).group(1))
    prompt = re.search(r'name="prompt" value="([^"]+)"', html).group(1)
    form = {"prompt": prompt}
    if prompt == "login":
        form.update(login=USER, password="any")
    log(f"  {hop}: {r.status_code} page prompt={prompt}; POST {action}")
    r = s.post(action, data=form, allow_redirects=False, timeout=5)
    url = up.urljoin(action, r.headers["location"])
    log(f"     {r.status_code} -> {url[:110]}")
    if url.startswith(REDIRECT):
        break
else:
    sys.exit("no callback reached")

q = dict(up.parse_qsl(up.urlsplit(url).query))
assert q["state"] == state, "state mismatch"
assert q.get("iss") == ISSUER, "RFC 9207 iss param mismatch"
if CODE_ONLY:
    print(q["code"], verifier, nonce)
    sys.exit(0)
log("callback query:", q)

tok = requests.post(disc["token_endpoint"], auth=(CLIENT_ID, CLIENT_SECRET), timeout=5, data={
    "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
    "code_verifier": verifier}).json()
log("token response keys:", sorted(tok))
hdr, payload, _ = tok["id_token"].split(".")
pad = lambda x: x + "=" * (-len(x) % 4)
log("id_token header:", json.loads(base64.urlsafe_b64decode(pad(hdr))))
claims = json.loads(base64.urlsafe_b64decode(pad(payload)))
log("id_token claims:", json.dumps(claims, indent=1))
assert claims["nonce"] == nonce and claims["aud"] == CLIENT_ID and claims["iss"] == ISSUER

# replaying the same code must fail (invalid_grant)
r2 = requests.post(disc["token_endpoint"], auth=(CLIENT_ID, CLIENT_SECRET), timeout=5, data={
    "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
    "code_verifier": verifier})
log("code replay:", r2.status_code, r2.json())

# RP-initiated logout: GET end_session with id_token_hint -> confirm form -> POST logout=yes
r = s.get(disc["end_session_endpoint"], params={"id_token_hint": tok["id_token"],
          "post_logout_redirect_uri": f"http://127.0.0.1:{RP_PORT}/ui/", "state": "lo1"}, timeout=5)
action = up.urljoin(disc["end_session_endpoint"], re.search(r'<form[^>]*action="([^"]+)"', r.text).group(1))
xsrf = re.search(r'name="xsrf" value="([^"]+)"', r.text).group(1)
r = s.post(action, data={"xsrf": xsrf, "logout": "yes"}, allow_redirects=False, timeout=5)
log("logout:", r.status_code, r.headers.get("location"))
