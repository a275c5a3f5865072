"""What a slow, oversized, echoing or hostile server (or what stands in front of Keyward) cannot
make the client do: wait past ``timeout``, read without end, show the token, set variables no
provider needs. Every server here is a small fake on 127.0.0.1, and stops by itself within a few
seconds, so that a client that does not stop it cannot hang the suite either."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import threading
import time
import tracemalloc
import types
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Keyward

import keyward
from keyward import AsyncKeyProvider, KeyProvider, KeywardConnectionError, KeywardError
from keyward._client import MAX_ANSWER_BYTES, registry_variables, variable_name_problem

TOKEN = "kwt_" + "secretq" * 6  # lower case, so that its upper-case echo differs


def _resolve(mode: str, url: str, timeout: float = 10.0) -> Any:
    """``resolve("openai")`` with the sync or the async client."""
    if mode == "sync":
        with KeyProvider(url, TOKEN, org="acme", timeout=timeout) as kp:
            return kp.resolve("openai")

    async def run() -> Any:
        async with AsyncKeyProvider(url, TOKEN, org="acme", timeout=timeout) as kp:
            return await kp.resolve("openai")

    return asyncio.run(run())


def _providers(mode: str, url: str, timeout: float = 10.0) -> Any:
    """``providers()`` with the sync or the async client."""
    if mode == "sync":
        with KeyProvider(url, TOKEN, org="acme", timeout=timeout) as kp:
            return kp.providers()

    async def run() -> Any:
        async with AsyncKeyProvider(url, TOKEN, org="acme", timeout=timeout) as kp:
            return await kp.providers()

    return asyncio.run(run())


def _assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN.lower() not in text.lower(), "the token shows"


# ----- a raw server, for answers no HTTP server library would send ------------------------


class RawServer:
    """Reads each request on 127.0.0.1 and hands the socket to ``answer``; counts what the
    answer managed to send in ``sent``."""

    def __init__(self, answer: Callable[[socket.socket, RawServer], None]) -> None:
        self.answer = answer
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the timeout, or closed
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        while len(body) < int(value):
                            body += conn.recv(65536)
                self.answer(conn, self)
            except OSError:
                pass  # the client went away: what these tests want

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, RawServer], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[socket.socket, RawServer], None]) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _drip(conn: socket.socket, data: bytes, every: float = 0.2) -> None:
    """``data`` a byte at a time: 25 bytes take 5 s, then the answer ends."""
    for byte in data:
        time.sleep(every)
        conn.sendall(bytes([byte]))


def trickled_body(conn: socket.socket, server: RawServer) -> None:
    """Headers at once, then a byte of the body every 0.2 s."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    _drip(conn, b" " * 25)


def trickled_headers(conn: socket.socket, server: RawServer) -> None:
    """The status line, then a byte of a header every 0.2 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    _drip(conn, b"X-Slow: " + b"a" * 17)
    conn.sendall(b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def stalled_body(conn: socket.socket, server: RawServer) -> None:
    """Headers and a little body at once and at 0.3 s, 0.6 s, 0.9 s; then nothing for 4 s."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    _drip(conn, b"   ", every=0.3)
    time.sleep(4)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("answer", [trickled_body, trickled_headers, stalled_body])
def test_timeout_is_a_deadline_for_the_whole_call(
    raw_server: Callable[..., RawServer],
    answer: Callable[[socket.socket, RawServer], None],
    mode: str,
) -> None:
    """httpx's timeouts are per read; ``timeout`` is not: a server that trickles its headers or
    its body, or stalls just before the end, has the call fail at the deadline."""
    server = raw_server(answer)
    started = time.monotonic()
    with pytest.raises(KeywardConnectionError) as caught:
        _resolve(mode, server.url, timeout=1)
    elapsed = time.monotonic() - started
    assert elapsed < 1.7, f"raised after {elapsed:.2f} s with timeout=1"
    assert "no whole answer" in str(caught.value) and "within 1 s" in str(caught.value)
    assert caught.value.status is None
    _assert_no_token(str(caught.value), repr(caught.value))


def _huge(chunked: bool) -> Callable[[socket.socket, RawServer], None]:
    size = 50 * 1024 * 1024

    def answer(conn: socket.socket, server: RawServer) -> None:
        length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + length + b"\r\n\r\n"
        )
        block = b" " * 65536
        for _ in range(size // len(block)):
            conn.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            server.sent += len(block)
        if chunked:
            conn.sendall(b"0\r\n\r\n")

    return answer


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_answers_over_8_mib_are_refused(
    raw_server: Callable[..., RawServer], mode: str, chunked: bool
) -> None:
    server = raw_server(_huge(chunked))
    with pytest.raises(KeywardError) as caught:
        _resolve(mode, server.url)
    assert type(caught.value) is KeywardError
    assert "larger than any Keyward sends" in str(caught.value)
    assert MAX_ANSWER_BYTES == 8 * 1024 * 1024 and "8 MiB" in str(caught.value)
    assert caught.value.status == 200, "the answer's status, with a Content-Length or without"
    time.sleep(0.2)  # the server notices the client is gone
    assert server.sent < 30 * 1024 * 1024, "the client read on past the limit"


def _encoded(encoding: str, body: bytes, wait: float) -> Callable[[socket.socket, RawServer], None]:
    """A 200 answer with ``Content-Encoding: encoding``: the headers at once, the body (of
    ``Content-Length`` bytes) ``wait`` seconds later."""

    def answer(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: "
            + encoding.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(wait)
        conn.sendall(body)
        server.sent += len(body)

    return answer


EMPTY_REGISTRY = b'{"items": []}'
ENCODED = {
    "gzip": gzip.compress(EMPTY_REGISTRY),
    "gzip, gzip": gzip.compress(gzip.compress(EMPTY_REGISTRY)),
    "deflate": zlib.compress(EMPTY_REGISTRY),
    "GZIP": gzip.compress(EMPTY_REGISTRY),
    "x-unknown": EMPTY_REGISTRY,
    "": EMPTY_REGISTRY,
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("encoding", list(ENCODED), ids=repr)
def test_encoded_answers_are_refused_before_their_body(
    raw_server: Callable[..., RawServer], mode: str, encoding: str
) -> None:
    """Keyward never compresses, and the client asks for ``identity``; httpx would inflate a
    gzip answer anyway, after the size check. Any Content-Encoding but ``identity`` is refused
    as the headers arrive: the body, sent 2 s later, is never waited for."""
    server = raw_server(_encoded(encoding, ENCODED[encoding], wait=2))
    started = time.monotonic()
    with pytest.raises(KeywardError) as caught:
        _providers(mode, server.url)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s: the body was waited for"
    assert type(caught.value) is KeywardError
    assert caught.value.status == 200
    assert "Content-Encoding" in str(caught.value)
    _assert_no_token(str(caught.value), repr(caught.value))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("encoding", ["identity", "Identity"])
def test_identity_is_no_encoding(
    raw_server: Callable[..., RawServer], mode: str, encoding: str
) -> None:
    server = raw_server(_encoded(encoding, EMPTY_REGISTRY, wait=0))
    assert _providers(mode, server.url) == []


_bomb: list[bytes] = []


def _double_gzip_bomb() -> bytes:
    """273 bytes that inflate, twice, to a JSON string of 64 MiB (made once)."""
    if not _bomb:
        inner = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
        block = b" " * (1024 * 1024)
        once = inner.compress(b'"') + b"".join(inner.compress(block) for _ in range(64))
        _bomb.append(gzip.compress(once + inner.compress(b'"') + inner.flush(), 9))
    return _bomb[0]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_gzip_bomb_is_never_inflated(raw_server: Callable[..., RawServer], mode: str) -> None:
    """``Content-Encoding: gzip, gzip``: a few hundred bytes on the wire, 64 MiB once inflated
    (the outside test's 1.8 KB one took the process to 2 GB). Nothing is inflated: the call
    allocates no more than a few MiB."""
    body = _double_gzip_bomb()
    assert len(body) < 4096
    server = raw_server(_encoded("gzip, gzip", body, wait=0))
    tracemalloc.start()
    try:
        with pytest.raises(KeywardError) as caught:
            _providers(mode, server.url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated"
    assert "Content-Encoding" in str(caught.value) and caught.value.status == 200


# ----- what an exception keeps: no chain back to the request ---------------------------------


def _strings_reachable(root: object) -> Iterator[str]:
    """Every string (and bytes, as Latin-1) reachable from ``root``: an exception's ``args``,
    ``__cause__`` and ``__context__``, containers, and every object's attributes (an httpx
    error's request, its headers). Tracebacks are not followed: their frames hold the client,
    which holds the token by design."""
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < 200_000:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            yield obj
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            yield bytes(obj).decode("latin-1")
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (type, types.ModuleType, types.TracebackType, types.FrameType)) or (
            callable(obj) and not isinstance(obj, BaseException)
        ):
            continue
        else:
            if isinstance(obj, BaseException):
                stack.extend([obj.args, obj.__cause__, obj.__context__])
            stack.append(getattr(obj, "__dict__", None))
            for name in getattr(type(obj), "__slots__", ()):
                stack.append(getattr(obj, name, None))


def _stalled(conn: socket.socket, server: RawServer) -> None:
    time.sleep(3)


def _unauthorized(conn: socket.socket, server: RawServer) -> None:
    body = b'{"detail": "invalid token", "status": 401}'
    conn.sendall(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/problem+json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", ["refused", "stalled", "401"])
def test_no_exception_chain_leads_back_to_the_token(
    raw_server: Callable[..., RawServer], mode: str, case: str
) -> None:
    """``raise ... from None`` hides the httpx error from tracebacks, not from
    ``e.__context__``, whose request still carries the Authorization header: the package's
    errors are raised after the ``except`` block, and nothing reachable from either link of the
    chain holds the token."""
    if case == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends
    else:
        url = raw_server(_stalled if case == "stalled" else _unauthorized).url
    with pytest.raises(KeywardError) as caught:
        _resolve(mode, url, timeout=0.5)
    error = caught.value
    assert error.status == (401 if case == "401" else None)
    for link in ("__context__", "__cause__"):
        for text in _strings_reachable(getattr(error, link)):
            assert TOKEN.lower() not in text.lower(), f"the token is reachable from {link}"
    assert error.__context__ is None and error.__cause__ is None


def test_a_token_file_that_is_not_utf8_leaves_no_chain_to_its_bytes(tmp_path: Path) -> None:
    """The decoding error would keep the file's bytes (the token) in ``e.__context__``."""
    token_file = tmp_path / "token"
    token_file.write_bytes(TOKEN.encode() + b"\xff")
    with KeyProvider("http://127.0.0.1:9", token_file=str(token_file), org="acme") as kp:
        with pytest.raises(keyward.ConfigurationError, match="not UTF-8") as caught:
            kp.resolve("openai")
    for link in ("__context__", "__cause__"):
        for text in _strings_reachable(getattr(caught.value, link)):
            assert TOKEN.lower() not in text.lower(), f"the token is reachable from {link}"


# ----- a fake Keyward, answering what it is told --------------------------------------------


class FakeKeyward:
    """An HTTP server on 127.0.0.1 answering each path with a fixed status, JSON and reason."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any, str | None]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body, reason = fake.answers.get(self.path, (404, {"detail": "no"}, None))
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeKeyward]:
    server = FakeKeyward()
    yield server
    server.close()


def test_a_proxy_echoing_the_token_in_any_case_is_redacted(fake: FakeKeyward) -> None:
    shouted = TOKEN.upper()
    fake.answers["/api/v1/resolve"] = (
        502,
        {
            "type": "about:blank",
            "title": f"Bad gateway (Authorization: Bearer {shouted})",
            "status": 502,
            "detail": f"upstream refused {shouted}",
            "echo": {"headers": [f"authorization: bearer {shouted}", TOKEN.capitalize()]},
            shouted: "a member named by it",
        },
        None,
    )
    fake.answers["/api/v1/env"] = (502, None, f"Refused {shouted}")  # no body: the reason phrase
    with KeyProvider(fake.url, TOKEN, org="acme") as kp:
        with pytest.raises(KeywardError) as resolving:
            kp.resolve("openai")
        with pytest.raises(KeywardError) as env:
            kp.env()
    for error in (resolving.value, env.value):
        assert error.status == 502
        _assert_no_token(
            str(error), repr(error), repr(error.args), error.detail, json.dumps(error.problem)
        )
    problem = resolving.value.problem
    assert problem["detail"] == "upstream refused ***" == resolving.value.detail
    assert problem["title"] == "Bad gateway (Authorization: Bearer ***)"
    assert problem["echo"] == {"headers": ["authorization: bearer ***", "***"]}
    assert problem["***"] == "a member named by it"
    assert env.value.detail == "Refused ***"


def _config(env: list[dict[str, Any]], provider: str = "openai") -> dict[str, Any]:
    return {
        "provider": provider,
        "api_key": "sk-canary-" + "k" * 30,
        "key_hint": "sk-...kkkk",
        "source": "vault",
        "env": env,
        "cache_ttl_ms": 1000,
    }


GOOD = [
    {"name": "GOOGLE_APPLICATION_CREDENTIALS", "secret": True, "file": True},
    {"name": "OPENAI_API_KEY", "secret": True},
    {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:9/v1"},
]

BAD_NAMES = [
    "LD_PRELOAD",
    "PYTHONSTARTUP",
    "BAD=NAME",
    "PATH",
    "HOME",
    "IFS",
    "BASH_ENV",
    "DYLD_INSERT_LIBRARIES",
    "PERL5OPT",
    "NODE_OPTIONS",
    "RUBYOPT",
    "KEYWARD_URL",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "http_proxy",
    "No_Proxy",
    "ALL_PROXY",
    "openai_api_key",
    "_UNDERSCORE",
    "9LIVES",
    "",
    "A\x00B",
]


# What the outside test had a hostile answer set: with them, a later `git status` ran a command.
EVIL = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "core.fsmonitor",
    "GIT_CONFIG_VALUE_0": "touch /tmp/evil; false",
    "GIT_SSH_COMMAND": "touch /tmp/evil",
    "LESSOPEN": "|touch /tmp/evil; echo %s",
    "GLIBC_TUNABLES": "glibc.malloc.check=3",
    "PIP_INDEX_URL": "http://127.0.0.1:9/tmp/evil/",
}


def _environment_untouched(before: dict[str, str]) -> None:
    assert dict(os.environ) == before
    assert "/tmp/evil" not in "".join(os.environ.values())


@pytest.fixture
def registry_answer(keyward: Keyward) -> Any:
    """The real server's ``GET /api/v1/providers`` answer, for a fake to serve."""
    return keyward.api("GET", "/api/v1/providers", token=keyward.resolver)


@pytest.mark.parametrize(
    "names",
    [
        ["LD_PRELOAD", "PYTHONSTARTUP", "BAD=NAME"],
        ["BAD=NAME"],
        ["http_proxy"],
        ["KEYWARD_URL"],
        ["GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"],
        ["GIT_SSH_COMMAND"],
        ["LESSOPEN"],
        ["GLIBC_TUNABLES"],
        ["PIP_INDEX_URL"],
    ],
)
def test_variables_the_server_names_are_checked_before_anything_changes(
    fake: FakeKeyward, monkeypatch: pytest.MonkeyPatch, registry_answer: Any, names: list[str]
) -> None:
    """A hostile answer sets nothing (not its good variables either, nor the credential file)
    and raises a KeywardError naming the variable, never a bare ValueError halfway through."""
    hostile = GOOD + [{"name": name, "value": EVIL.get(name, "/tmp/evil.so")} for name in names]
    fake.answers["/api/v1/resolve"] = (200, _config(hostile), None)
    fake.answers["/api/v1/env"] = (200, {"providers": [_config(hostile)]}, None)
    fake.answers["/api/v1/providers"] = (200, registry_answer, None)
    monkeypatch.setenv("KEYWARD_URL", fake.url)
    monkeypatch.setenv("KEYWARD_TOKEN", TOKEN)
    monkeypatch.setenv("KEYWARD_ORG", "acme")
    written = dict(keyward._files._files)
    before = dict(os.environ)
    failures: list[KeywardError] = []
    with KeyProvider(cache=False) as kp:
        for call in (
            lambda: kp.provision_provider_keys("openai"),
            kp.provision_all_keys,
            kp.env,
            lambda: asyncio.run(keyward.provision_provider_keys("openai")),
            lambda: asyncio.run(keyward.provision_all_keys()),
        ):
            with pytest.raises(KeywardError) as caught:
                call()
            failures.append(caught.value)
            _environment_untouched(before)
    assert keyward._files._files == written, "a credential file was written"
    for error in failures:
        assert repr(names[0]) in str(error), str(error)
        assert "nothing was changed" in str(error)
        assert "/tmp/evil" not in str(error) and "canary" not in str(error)


@pytest.mark.parametrize("name", BAD_NAMES + list(EVIL), ids=repr)
def test_names_that_change_how_programs_run_are_refused_even_if_registered(name: str) -> None:
    """The deny list is a second guard: a registry naming one of them does not let it through."""
    assert variable_name_problem(name, frozenset([name])) is not None


def test_only_the_registrys_variables_and_compatible_ones_are_allowed(keyward: Keyward) -> None:
    """An allow list: what Keyward's registry names, and what a compatible credential's
    ``env_prefix`` makes (``LOCALAI_API_KEY``, ``LOCALAI_BASE_URL``, ``LOCALAI_API_BASE``);
    nothing else, and never a name of the deny list."""
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        registered = registry_variables(kp.providers())
    assert {"OPENAI_API_KEY", "AWS_REGION", "GOOGLE_APPLICATION_CREDENTIALS"} <= registered
    for name in ("LOCALAI_API_KEY", "LOCALAI_BASE_URL", "LOCALAI_API_BASE", "LOCAL_API_KEY"):
        assert name not in registered
        assert variable_name_problem(name, registered) is None, name
    for name in EVIL:
        assert name not in registered
        problem = variable_name_problem(name, registered)
        assert problem is not None and "registry" in problem, name
    for name in ("PYTHON_API_KEY", "LD_BASE_URL", "KEYWARD_API_BASE", "localai_api_key"):
        assert variable_name_problem(name, registered) is not None, name
    for name in ("AWS_REGION", "OPENAI_API_KEY_2", "API_KEY", "_API_KEY", "X_API_KEYS"):
        assert variable_name_problem(name, frozenset()) is not None, name


def test_the_registry_is_asked_once_per_client(keyward: Keyward) -> None:
    """Checking the names costs one registry request for the client's lifetime; resolutions
    are still cached."""
    requests: list[str] = []

    class Noting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            requests.append(request.url.path)
            return super().handle_request(request)

    with KeyProvider(keyward.url, keyward.resolver, transport=Noting()) as kp:
        assert kp.provision_provider_keys("openai") is True
        assert kp.provision_provider_keys("azure") is True
        assert kp.provision_provider_keys("openai") is True
        assert kp.env()["OPENAI_API_KEY"] == keyward.openai_key
        assert kp.provision_all_keys()["vertex"] is True
        assert kp.provision_provider_keys("anthropic") is False
    assert requests.count("/api/v1/providers") == 1
    assert requests.count("/api/v1/resolve") == 3  # openai, azure, anthropic
    assert requests.count("/api/v1/env") == 1


def test_a_value_with_a_nul_is_refused_not_a_value_error(
    fake: FakeKeyward, registry_answer: Any
) -> None:
    fake.answers["/api/v1/providers"] = (200, registry_answer, None)
    fake.answers["/api/v1/resolve"] = (
        200,
        _config([*GOOD, {"name": "OPENAI_ORG_ID", "value": "org\x00/tmp/evil"}]),
        None,
    )
    before = dict(os.environ)
    with KeyProvider(fake.url, TOKEN, org="acme") as kp:
        with pytest.raises(KeywardError, match=r"'OPENAI_ORG_ID'.*NUL") as caught:
            kp.provision_provider_keys("openai")
    _environment_untouched(before)
    assert "/tmp/evil" not in str(caught.value)


def test_every_variable_of_keywards_registry_is_allowed(keyward: Keyward) -> None:
    """The check never refuses what Keyward itself sets: every variable its registry names, and
    every one of the organization's resolutions."""
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        names: set[str] = set()
        for info in kp.providers():
            names.update(info.secret_env, info.base_url_env)
            names.update(name for field in info.public_fields for name in field.env)
            names.update(name for name, _ in info.fixed_env)
        every = kp.env()
        names.update(every)
        names.update(var.name for p in ("openai", "azure", "vertex") for var in kp.resolve(p).env)
        registered = registry_variables(kp.providers())
    assert (
        len(names) > 50 and "OPENAI_API_KEY" in names and "GOOGLE_APPLICATION_CREDENTIALS" in names
    )
    refused = {name: variable_name_problem(name, registered) for name in names}
    assert {name: problem for name, problem in refused.items() if problem} == {}
