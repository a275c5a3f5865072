#!/usr/bin/env python3
"""Browser-level pitfalls for Keyward's console (real Chromium), OP and RP on DIFFERENT sites:
OP issuer http://localhost:OP, RP (stub) http://127.0.0.1:RP.  (127.0.0.1:A vs 127.0.0.1:B would
be the SAME site -- ports don't count -- and would hide every SameSite problem.)

 1. which cookies set at /ui/oidc/start (Strict vs Lax) come back on the IdP -> callback redirect
 2. a session cookie (SameSite=Strict) set by the callback: sent on the follow-up
    (a) 302 redirect to /ui/home, (b) <meta refresh> to /ui/home?
 3. CSP `form-action 'self'` (Keyward's console CSP) + POST form whose response is a 303 to the
    OP (SSO start / RP-initiated logout): does Chromium follow it? and with the OP origin added?

usage: flow_samesite_csp.py OP_ISSUER RP_PORT
"""
import base64, hashlib, json, os, secrets, sys, threading, time, urllib.parse as up
from http.server import BaseHTTPRequestHandler, HTTPServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

os.environ["SE_OFFLINE"] = "true"
ISSUER, RP_PORT = sys.argv[1], int(sys.argv[2])
RP = f"http://127.0.0.1:{RP_PORT}"
REDIRECT = f"{RP}/ui/oidc/callback"
seen = {}          # path -> cookie header
MODE = {"cb": "redirect", "csp": "form-action 'self'"}
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def auth_url():
    v = b64u(secrets.token_bytes(32))
    return f"{ISSUER}/auth?" + up.urlencode({"response_type": "code", "client_id": "keyward-console",
        "redirect_uri": REDIRECT, "scope": "openid", "state": "st", "nonce": "n",
        "code_challenge": b64u(hashlib.sha256(v.encode()).digest()), "code_challenge_method": "S256"})

class H(BaseHTTPRequestHandler):
    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("content-type", "text/html"); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        path = self.path.split("?")[0]
        seen[path] = self.headers.get("cookie")
        if path == "/ui/oidc/start":
            self.send(302, headers=[("set-cookie", "tx_strict=1; Path=/ui; HttpOnly; SameSite=Strict"),
                                    ("set-cookie", "tx_lax=1; Path=/ui; HttpOnly; SameSite=Lax"),
                                    ("location", auth_url())])
        elif path == "/ui/oidc/callback":
            ck = ("set-cookie", f"sess_{MODE['cb']}=1; Path=/ui; HttpOnly; SameSite=Strict")
            if MODE["cb"] == "redirect":
                self.send(302, headers=[ck, ("location", "/ui/home")])
            else:
                self.send(200, b'<html><head><meta http-equiv="refresh" content="0;url=/ui/home"></head>'
                               b'<body>Signed in. <a href="/ui/home">Continue</a></body></html>', [ck])
        elif path == "/ui/form":
            self.send(200, b'<html><body><form method="post" action="/ui/go">'
                           b'<button id="go" type="submit">go</button></form></body></html>',
                      [("content-security-policy", MODE["csp"])])
        else:
            self.send(200, f"<html><body><h1 id='page'>{path}</h1></body></html>".encode())
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        # e.g. POST /ui/logout -> 303 to the OP's end_session_endpoint (or SSO start -> /auth)
        self.send(303, headers=[("location", f"{ISSUER}/session/end?client_id=keyward-console")])
    def log_message(self, *a): pass

srv = HTTPServer(("127.0.0.1", RP_PORT), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()

def browser():
    o = webdriver.ChromeOptions(); o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
              "--disable-background-networking", "--disable-component-update", "--no-first-run",
              "--disable-sync", "--disable-default-apps"]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)

def login_round(mode):
    MODE["cb"] = mode; seen.clear()
    d = browser()
    try:
        w = WebDriverWait(d, 10)
        d.get(f"{RP}/ui/oidc/start")
        w.until(lambda d: d.find_elements(By.NAME, "login"))
        d.find_element(By.NAME, "login").send_keys("alice"); d.find_element(By.NAME, "password").send_keys("x")
        d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        w.until(lambda d: d.find_elements(By.NAME, "prompt") or "/ui/" in d.current_url)
        if d.find_elements(By.CSS_SELECTOR, "button[type=submit]") and "interaction" in d.current_url:
            d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        w.until(lambda d: d.find_elements(By.ID, "page"))
        time.sleep(0.3)
        print(f"[callback->{mode}] cookies on /ui/oidc/callback: {seen.get('/ui/oidc/callback')!r}")
        print(f"[callback->{mode}] cookies on /ui/home         : {seen.get('/ui/home')!r}")
        d.get(f"{RP}/ui/home")   # a fresh, same-site navigation (user clicks/reloads)
        print(f"[callback->{mode}] cookies on /ui/home (typed) : {seen.get('/ui/home')!r}")
    finally:
        d.quit()

def csp_round(csp):
    MODE["csp"] = csp
    d = browser()
    try:
        d.get(f"{RP}/ui/form"); d.find_element(By.ID, "go").click(); time.sleep(1.5)
        errs = [l["message"][:160] for l in d.get_log("browser") if "form-action" in l["message"]]
        print(f"[csp {csp!r}] POST -> 303 {ISSUER}/session/end : browser is at {d.current_url[:60]!r}; csp errors: {errs}")
    finally:
        d.quit()

try:
    login_round("redirect")
    login_round("meta")
    csp_round("form-action 'self'")
    op_origin = "{0.scheme}://{0.netloc}".format(up.urlsplit(ISSUER))
    csp_round(f"form-action 'self' {op_origin}")
finally:
    srv.shutdown()
