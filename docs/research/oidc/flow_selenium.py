#!/usr/bin/env python3
"""Drive oidc-provider's devInteractions login + consent with real (Debian) Chromium via
selenium + chromedriver. A tiny RP stub on 127.0.0.1:RP_PORT catches the callback.
Then: rotate the OP signing key, run a second auth in the same browser (SSO: no login page
because the OP session survived the rotation), then RP-initiated logout through the browser.

usage: flow_selenium.py ISSUER RP_PORT
"""
import base64, hashlib, json, os, secrets, sys, threading, time, urllib.parse as up
from http.server import BaseHTTPRequestHandler, HTTPServer
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager go online
ISSUER, RP_PORT = sys.argv[1], int(sys.argv[2])
REDIRECT = f"http://127.0.0.1:{RP_PORT}/ui/oidc/callback"
hits = []

class RP(BaseHTTPRequestHandler):
    def do_GET(self):
        hits.append(self.path)
        body = f"<html><body><h1 id='rp'>RP got {self.path.split('?')[0]}</h1></body></html>".encode()
        self.send_response(200); self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass

rp = HTTPServer(("127.0.0.1", RP_PORT), RP)
threading.Thread(target=rp.serve_forever, daemon=True).start()

b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def auth_url():
    v = b64u(secrets.token_bytes(32)); st = b64u(secrets.token_bytes(16)); n = b64u(secrets.token_bytes(16))
    u = f"{ISSUER}/auth?" + up.urlencode({"response_type": "code", "client_id": "keyward-console",
        "redirect_uri": REDIRECT, "scope": "openid email groups", "state": st, "nonce": n,
        "code_challenge": b64u(hashlib.sha256(v.encode()).digest()), "code_challenge_method": "S256"})
    return u, v, st, n

def redeem(code, v):
    t = requests.post(f"{ISSUER}/token", auth=("keyward-console", "console-secret-0123456789abcdef"),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "code_verifier": v}, timeout=5).json()
    h, p, _ = t["id_token"].split(".")
    d = lambda x: json.loads(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    return t, d(h), d(p)

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          # loopback only: the devInteractions layout @imports fonts.googleapis.com
          "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
          "--disable-background-networking", "--disable-component-update", "--no-first-run",
          "--disable-sync", "--disable-default-apps", "--disable-features=OptimizationHints,Translate"]:
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
t0 = time.time()
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
print(f"chromium up in {time.time()-t0:.2f}s:", drv.capabilities["browserVersion"])
try:
    wait = WebDriverWait(drv, 10)
    u, v, st, n = auth_url()
    drv.get(u)
    try:
        wait.until(lambda d: d.find_elements(By.NAME, "login"))
    except Exception:
        print("DEBUG", drv.current_url, drv.find_element(By.TAG_NAME, "body").text[:800]); raise
    drv.save_screenshot("/tmp/oidc-research/login_page.png")
    print("login page:", drv.title, drv.current_url[:70])
    drv.find_element(By.NAME, "login").send_keys("alice")
    drv.find_element(By.NAME, "password").send_keys("whatever")
    drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "prompt" in d.page_source and "consent" in d.page_source or d.current_url.startswith(REDIRECT))
    drv.save_screenshot("/tmp/oidc-research/consent_page.png")
    print("consent page:", drv.current_url[:70])
    drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.current_url.startswith(REDIRECT))
    q = dict(up.parse_qsl(up.urlsplit(drv.current_url).query))
    assert q["state"] == st
    tok, hdr, claims = redeem(q["code"], v)
    print("1st login -> id_token kid", hdr["kid"], "claims", {k: claims[k] for k in ("sub", "groups", "email_verified", "nonce")}, "nonce ok:", claims["nonce"] == n)

    print("rotate:", requests.post(f"{ISSUER}/__test/rotate", timeout=5).json())
    u, v, st, n = auth_url()
    drv.get(u)   # same browser: OP session + grant survive the Provider swap -> straight back
    try:
        wait.until(lambda d: d.current_url.startswith(REDIRECT))
    except Exception:
        print("DEBUG", drv.current_url, drv.find_element(By.TAG_NAME, "body").text[:800]); raise
    q = dict(up.parse_qsl(up.urlsplit(drv.current_url).query))
    tok2, hdr2, claims2 = redeem(q["code"], v)
    print("2nd auth (SSO, no login page) -> id_token kid", hdr2["kid"], "sub", claims2["sub"])

    drv.get(f"{ISSUER}/session/end?" + up.urlencode({"id_token_hint": tok2["id_token"],
            "post_logout_redirect_uri": f"http://127.0.0.1:{RP_PORT}/ui/", "state": "bye"}))
    wait.until(lambda d: d.find_elements(By.ID, "logout-yes"))
    drv.find_element(By.ID, "logout-yes").click()
    wait.until(lambda d: d.current_url.startswith(f"http://127.0.0.1:{RP_PORT}/ui/?"))
    print("logout ->", drv.current_url)
    u, v, st, n = auth_url()
    drv.get(u)
    wait.until(lambda d: d.find_elements(By.NAME, "login"))
    print("after logout a new auth shows the login page again:", bool(drv.find_elements(By.NAME, "login")))
    print("RP stub saw:", [h.split("?")[0] for h in hits])
    print("browser log lines about external fonts:", [l["message"][-170:] for l in drv.get_log("browser") if "googleapis" in l["message"]][:1])
finally:
    drv.quit()
    rp.shutdown()
