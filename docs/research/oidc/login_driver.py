#!/usr/bin/env python3
"""usage: login_driver.py AUTH_URL USER  -> prints the RP callback URL the OP redirected to.
Completes oidc-provider's devInteractions (login + consent) with plain HTTP form posts."""
import re, sys, urllib.parse as up, requests
url, user = sys.argv[1], sys.argv[2]
redirect = dict(up.parse_qsl(up.urlsplit(url).query))["redirect_uri"]
s = requests.Session()
for _ in range(12):
    r = s.get(url, allow_redirects=False, timeout=5)
    if r.is_redirect:
        url = up.urljoin(url, r.headers["location"])
    else:
        m = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        if not m:
            sys.exit(f"no form at {url}: {r.status_code} {r.text[:300]}")
        prompt = re.search(r'name="prompt" value="([^"]+)"', r.text).group(1)
        action = up.urljoin(url, m.group(1))
        r = s.post(action, data={"prompt": prompt, "login": user, "password": "x"},
                   allow_redirects=False, timeout=5)
        url = up.urljoin(action, r.headers["location"])
    if url.startswith(redirect):
        print(url)
        sys.exit(0)
sys.exit("callback never reached")
