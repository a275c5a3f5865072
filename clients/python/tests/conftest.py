"""A real ``keyward serve`` (SQLite, in a fresh directory) and a mock provider, for every test.

The binary is ``KEYWARD_BIN``; without it the suite fails (it is not skipped). The server runs in
an environment built from scratch: ``PATH``, ``HOME`` and Keyward's own settings, no provider
variables and none of this shell's ``KEYWARD_*``. It gets:

* organization ``acme``: an OpenAI credential whose base URL is the mock provider, an Azure
  OpenAI one (endpoint, api_version) and a Vertex one (a service-account JSON with a real RSA
  key); organization ``beta``: nothing;
* resolver tokens of both, an org_admin token of ``acme`` and a gateway token of ``acme``.

Every key is a canary: :meth:`Keyward.assert_clean` checks that none (nor any token) appears in
a piece of text.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

LISTENING = "keyward listening on http://"
MODELS = ["gpt-4o", "gpt-4o-mini"]
ANSWER = "Hello from the mock provider"


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


# ----- the mock provider ------------------------------------------------------------------


class MockProvider:
    """An OpenAI-style provider on 127.0.0.1 that answers only to ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.calls: list[tuple[str, str, bool]] = []  # (method, path, authorized)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _authorized(self) -> bool:
                ok = self.headers.get("Authorization") == f"Bearer {provider.key}"
                provider.calls.append((self.command, self.path, ok))
                return ok

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body: dict[str, Any] = json.loads(data or b"{}")
                return body

            def _refuse(self) -> None:
                self._reply(
                    401,
                    {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                )

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/v1/models":
                    self._reply(404, {"error": {"message": "not found"}})
                elif not self._authorized():
                    self._refuse()
                else:
                    self._reply(
                        200,
                        {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]},
                    )

            def do_POST(self) -> None:
                body = self._body()
                if self.path.split("?")[0] != "/v1/chat/completions":
                    self._reply(404, {"error": {"message": "not found"}})
                elif not self._authorized():
                    self._refuse()
                else:
                    self._reply(
                        200,
                        {
                            "id": "chatcmpl-mock",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model", "gpt-4o-mini"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": ANSWER},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 5,
                                "completion_tokens": 6,
                                "total_tokens": 11,
                            },
                        },
                    )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----- the server ---------------------------------------------------------------------------


@dataclass
class Keyward:
    """The running server, what was set up in it, and the secrets that must never show."""

    url: str
    admin: str
    resolver: str  # acme
    resolver_beta: str
    org_admin: str  # acme
    gateway: str  # acme, kwg_...
    openai_key: str
    azure_key: str
    vertex_json: str
    openai_credential: str  # its id
    upstream: MockProvider
    secrets: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        """An admin (or ``token``) call to the API, checked for success."""
        r = httpx.request(
            method,
            self.url + path,
            timeout=30,
            headers={"Authorization": f"Bearer {token or self.admin}"},
            **kw,
        )
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def new_token(self, role: str, org: str, name: str | None = None) -> dict[str, Any]:
        """A new API token (its view, with ``token``); remembered as a secret."""
        made: dict[str, Any] = self.api(
            "POST",
            "/api/v1/tokens",
            json={"name": name or f"{role}-{_random(8)}", "role": role, "organization_id": org},
        )
        self.secrets.append(made["token"])
        return made

    def assert_clean(self, text: str, what: str = "output") -> None:
        """``text`` holds no key and no token (each named by position, never printed)."""
        for i, secret in enumerate(self.secrets):
            assert secret not in text, f"secret #{i} appears in {what}"


def _service_account() -> tuple[str, list[str]]:
    """A Vertex service-account JSON with a real RSA key, and its distinctive secret parts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = secrets.token_hex(20)
    account = {
        "type": "service_account",
        "project_id": "acme-vertex",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": "keyward-test@acme-vertex.iam.gserviceaccount.com",
        "client_id": "104729384756102938475",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        "keyward-test%40acme-vertex.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    }
    body_lines = [line for line in pem.splitlines() if "-----" not in line]
    return json.dumps(account), [key_id, *body_lines[1:4]]


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Starts ``keyward serve`` on a free port; its process, URL and admin token. Its standard
    error goes to ``serve.stderr`` in ``workdir``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(workdir)),
        "KEYWARD_DATA_DIR": str(workdir / "data"),
    }
    keygen = subprocess.run([binary, "keygen"], env=env, capture_output=True, text=True, timeout=60)
    assert keygen.returncode == 0, f"keyward keygen failed: {keygen.stderr}"
    env["KEYWARD_MASTER_KEY"] = keygen.stdout.strip()
    admin = secrets.token_hex(32)
    env["KEYWARD_ADMIN_TOKEN"] = admin
    with open(workdir / "serve.stderr", "wb") as stderr:
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # reads stdout to the end, so that the server never blocks on it
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            err = (workdir / "serve.stderr").read_text(errors="replace")[-2000:]
            pytest.fail(
                f"keyward serve did not say it listens within 30 s; stdout {seen}, stderr: {err}"
            )
        seen.append(line.rstrip())
        if line.startswith(LISTENING):
            assert "admin token taken from KEYWARD_ADMIN_TOKEN" in seen, seen
            address = line[len(LISTENING) :].strip()
            return proc, f"http://{address}", admin


@pytest.fixture(scope="session")
def keyward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyward]:
    binary = os.environ.get("KEYWARD_BIN")
    if not binary:
        pytest.fail("KEYWARD_BIN is not set: it must name a `keyward` binary to test against")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"KEYWARD_BIN={binary} is not an executable file")
    workdir = tmp_path_factory.mktemp("keyward")
    proc, url, admin = _start(binary, workdir)
    openai_key = "sk-canary-" + _random(40)
    azure_key = "azcanary" + _random(40)
    vertex_json, vertex_parts = _service_account()
    upstream = MockProvider(openai_key)
    try:
        kw = Keyward(
            url=url,
            admin=admin,
            resolver="",
            resolver_beta="",
            org_admin="",
            gateway="",
            openai_key=openai_key,
            azure_key=azure_key,
            vertex_json=vertex_json,
            openai_credential="",
            upstream=upstream,
            secrets=[admin, openai_key, azure_key, vertex_json, *vertex_parts],
        )
        kw.api("POST", "/api/v1/orgs", json={"id": "acme", "name": "Acme Inc"})
        kw.api("POST", "/api/v1/orgs", json={"id": "beta"})

        def credential(provider: str, name: str, key: str, fields: dict[str, str]) -> str:
            made = kw.api(
                "POST",
                "/api/v1/credentials",
                json={
                    "organization_id": "acme",
                    "provider": provider,
                    "name": name,
                    "api_key": key,
                    "fields": fields,
                },
            )
            return str(made["id"])

        kw.openai_credential = credential("openai", "prod", openai_key, {"base_url": upstream.url})
        credential(
            "azure_openai",
            "eu",
            azure_key,
            {"endpoint": "https://acme-eu.openai.azure.com", "api_version": "2024-10-21"},
        )
        credential(
            "vertex", "gcp", vertex_json, {"project": "acme-vertex", "location": "europe-west4"}
        )
        kw.resolver = kw.new_token("resolver", "acme", "app")["token"]
        kw.resolver_beta = kw.new_token("resolver", "beta", "app")["token"]
        kw.org_admin = kw.new_token("org_admin", "acme", "ops")["token"]
        gateway = kw.api(
            "POST", "/api/v1/gateway-tokens", json={"organization_id": "acme", "name": "chat-ui"}
        )
        kw.gateway = gateway["token"]
        kw.secrets.append(kw.gateway)
        yield kw
    finally:
        upstream.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without this shell's ``KEYWARD_*`` and leaves ``os.environ`` as it
    found it (provisioning writes to it)."""
    for name in list(os.environ):
        if name.startswith("KEYWARD_"):
            monkeypatch.delenv(name)
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture
def acme_env(keyward: Keyward, monkeypatch: pytest.MonkeyPatch) -> Keyward:
    """``KEYWARD_URL`` and ``KEYWARD_TOKEN`` (acme's resolver) set, as an application has them."""
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_TOKEN", keyward.resolver)
    return keyward
