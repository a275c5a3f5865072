# does a second /auth in the same cookie jar skip login? with/without key rotation in between
import sys, re, requests, urllib.parse as up, hashlib, base64, secrets
ISS=sys.argv[1]; ROT=sys.argv[2]=="rotate"
b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
def auth(s, user):
    v=b(secrets.token_bytes(32))
    u=f"{ISS}/auth?"+up.urlencode(dict(response_type="code",client_id="keyward-console",redirect_uri="http://127.0.0.1:8089/ui/oidc/callback",scope="openid email groups",state="s",nonce="n",code_challenge=b(hashlib.sha256(v.encode()).digest()),code_challenge_method="S256"))
    pages=[]
    for _ in range(12):
        r=s.get(u,allow_redirects=False)
        if r.is_redirect:
            u=up.urljoin(u,r.headers["location"])
            if "/ui/oidc/callback" in u: return pages
            continue
        p=re.search(r'name="prompt" value="([^"]+)"',r.text).group(1); pages.append(p)
        a=up.urljoin(u,re.search(r'action="([^"]+)"',r.text).group(1))
        r=s.post(a,data=dict(prompt=p,login=user,password="x"),allow_redirects=False); u=up.urljoin(a,r.headers["location"])
        if "/ui/oidc/callback" in u: return pages
s=requests.Session()
print("first auth pages:", auth(s,"alice"), "cookies:", sorted(c.name for c in s.cookies))
if ROT: requests.post(f"{ISS}/__test/rotate")
print("second auth pages (rotate=%s):"%ROT, auth(s,"alice"))
