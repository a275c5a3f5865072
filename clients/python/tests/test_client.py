"""``KeyProvider`` and ``AsyncKeyProvider`` against the server: typed answers, ``env()``, the
cache, discovery, settings and errors."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import MODELS, Keyward

from keyward import (
    AsyncKeyProvider,
    BadRequestError,
    ConfigurationError,
    EnvVar,
    KeyProvider,
    KeywardConnectionError,
    KeywardError,
    NoKeyError,
    PermissionDeniedError,
    ProviderConfig,
    SecretStr,
)


class Counting(httpx.HTTPTransport):
    """A real transport that notes each request's path and bearer."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, request.headers.get("authorization", "")))
        return super().handle_request(request)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class AsyncCounting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def test_resolve_gives_a_typed_config(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        config = kp.resolve("openai")
    assert isinstance(config, ProviderConfig)
    assert config.provider == "openai"
    assert isinstance(config.api_key, SecretStr)
    assert config.api_key.get_secret_value() == keyward.openai_key
    assert config.key_hint is not None
    assert config.key_hint.endswith(keyward.openai_key[-4:])
    assert config.key_hint != keyward.openai_key
    assert config.base_url == keyward.upstream.url
    assert config.credential_id == keyward.openai_credential
    assert config.credential_name == "prod"
    assert config.source == "vault"
    assert config.fields["base_url"] == keyward.upstream.url
    assert "api_key" not in config.fields and "env" not in config.fields
    assert EnvVar("OPENAI_API_KEY", secret=True) in config.env
    assert EnvVar("OPENAI_BASE_URL", value=keyward.upstream.url) in config.env
    text = repr(config) + str(config) + f"{config}"
    assert config.key_hint in text
    keyward.assert_clean(text, "the config's repr")


def test_resolve_azure_fields_and_name(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver, org="acme") as kp:
        config = kp.resolve("azure", name="eu")
    assert config.provider == "azure_openai"
    assert config.endpoint == "https://acme-eu.openai.azure.com"
    assert config.api_version == "2024-10-21"
    names = [v.name for v in config.env]
    assert "AZURE_OPENAI_API_KEY" in names and "OPENAI_API_VERSION" in names
    with KeyProvider(keyward.url, keyward.resolver, org="acme") as kp:
        # Open Notebook's modality names; a credential without modalities serves them all.
        assert kp.resolve("openai", modality="language").credential_name == "prod"
        assert kp.resolve("openai", modality="embedding").credential_name == "prod"
        with pytest.raises(NoKeyError) as caught:
            kp.resolve("azure", name="no-such-name")
    assert caught.value.status == 404


def test_env_mapping_leaves_os_environ_alone(keyward: Keyward) -> None:
    before = dict(os.environ)
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        some = kp.env(["openai", "azure"])
        every = kp.env()
    assert dict(os.environ) == before
    assert some["OPENAI_API_KEY"] == keyward.openai_key
    assert some["OPENAI_BASE_URL"] == keyward.upstream.url
    assert some["AZURE_OPENAI_API_KEY"] == keyward.azure_key
    assert some["AZURE_OPENAI_ENDPOINT"] == "https://acme-eu.openai.azure.com"
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in some
    assert set(some) <= set(every)
    with open(every["GOOGLE_APPLICATION_CREDENTIALS"]) as f:
        assert f.read() == keyward.vertex_json
    assert every["VERTEX_PROJECT"] == "acme-vertex"


def test_cache_keeps_answers_for_the_servers_ttl_and_no_longer(keyward: Keyward) -> None:
    raw = httpx.post(
        f"{keyward.url}/api/v1/resolve",
        json={"organization_id": "acme", "provider": "openai"},
        headers={"Authorization": f"Bearer {keyward.resolver}"},
    ).json()
    ttl = raw["cache_ttl_ms"] / 1000.0
    assert 0 < ttl < 30
    transport = Counting()
    with KeyProvider(keyward.url, keyward.resolver, transport=transport) as kp:
        first = kp.resolve("openai")
        assert kp.resolve("openai") is first
        assert transport.count("/api/v1/resolve") == 1
        assert transport.count("/api/v1/whoami") == 1
        kp.provision_provider_keys("openai")  # goes through the cache too
        assert transport.count("/api/v1/resolve") == 1
        kp.resolve("openai", name="prod")  # another key
        assert transport.count("/api/v1/resolve") == 2
        time.sleep(ttl + 0.2)
        kp.resolve("openai")
        assert transport.count("/api/v1/resolve") == 3
        kp.env()
        kp.env()
        assert transport.count("/api/v1/env") == 1
        assert transport.count("/api/v1/whoami") == 1


def test_cache_off(keyward: Keyward) -> None:
    transport = Counting()
    with KeyProvider(
        keyward.url, keyward.resolver, org="acme", cache=False, transport=transport
    ) as kp:
        kp.resolve("openai")
        kp.resolve("openai")
    assert transport.count("/api/v1/resolve") == 2
    assert transport.count("/api/v1/whoami") == 0


def test_async_provider(keyward: Keyward) -> None:
    async def run() -> tuple[ProviderConfig, dict[str, str], list[str]]:
        transport = AsyncCounting()
        async with AsyncKeyProvider(keyward.url, keyward.resolver, transport=transport) as kp:
            config = await kp.resolve("openai")
            await kp.resolve("openai")
            env = await kp.env(["openai"])
            return config, env, transport.paths

    config, env, paths = asyncio.run(run())
    assert config.api_key is not None
    assert config.api_key.get_secret_value() == keyward.openai_key
    assert env["OPENAI_API_KEY"] == keyward.openai_key
    assert paths.count("/api/v1/resolve") == 1


def test_providers_registry(keyward: Keyward) -> None:
    transport = Counting()
    with KeyProvider(keyward.url, keyward.resolver, transport=transport) as kp:
        registry = kp.providers()
        kp.providers()
    assert transport.count("/api/v1/providers") == 1
    by_id = {p.id: p for p in registry}
    assert {"openai", "azure_openai", "gemini", "vertex", "openai_compatible"} <= set(by_id)
    assert "google" in by_id["gemini"].aliases
    assert by_id["gemini"].answers_to("google")
    assert by_id["openai_compatible"].answers_to("openai-compatible")
    assert by_id["openai"].secret_env[0] == "OPENAI_API_KEY"


def test_get_api_key_fallback_and_without(
    keyward: Keyward, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-from-this-shell")
    with KeyProvider(keyward.url, keyward.resolver_beta) as kp:
        key = kp.get_api_key("google")
        assert key is not None and key.get_secret_value() == "AIza-from-this-shell"
        # Vertex's variable names a file, not the key: no fallback.
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/etc/service-account.json")
        assert kp.get_api_key("vertex") is None
    with KeyProvider(keyward.url, keyward.resolver_beta, env_fallback=False) as kp:
        assert kp.get_api_key("google") is None
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        key = kp.get_api_key("azure")
        assert key is not None and key.get_secret_value() == keyward.azure_key


def test_discover_models(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.org_admin) as kp:
        assert kp.discover_models(keyward.openai_credential) == MODELS
    assert any(path == "/v1/models" and ok for _, path, ok in keyward.upstream.calls)


def test_a_resolver_may_not_discover(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        with pytest.raises(PermissionDeniedError) as caught:
            kp.discover_models(keyward.openai_credential)
    assert caught.value.status == 403


def test_unknown_provider_is_a_bad_request(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        with pytest.raises(BadRequestError) as caught:
            kp.resolve("no-such-provider")
        assert caught.value.detail.startswith("unknown provider")
        assert caught.value.problem["status"] == 400
        assert kp.provision_provider_keys("no-such-provider") is False


def test_token_file_is_read_at_every_call(keyward: Keyward, tmp_path: Path) -> None:
    second = keyward.new_token("resolver", "acme")["token"]
    token_file = tmp_path / "token"
    token_file.write_text(keyward.resolver + "\n")
    transport = Counting()
    with KeyProvider(
        keyward.url, token_file=str(token_file), cache=False, transport=transport
    ) as kp:
        kp.resolve("openai")
        token_file.write_text(second)  # the platform rotated it
        kp.resolve("openai")
    bearers = [b for p, b in transport.requests if p == "/api/v1/resolve"]
    assert bearers == [f"Bearer {keyward.resolver}", f"Bearer {second}"]
    token_file.write_text("x" * (64 * 1024 + 1))
    with KeyProvider(keyward.url, token_file=str(token_file), org="acme") as kp:
        with pytest.raises(ConfigurationError, match="64 KiB"):
            kp.resolve("openai")


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KEYWARD_URL"):
        KeyProvider(token="kwt_x")
    monkeypatch.setenv("KEYWARD_URL", "ftp://keyward.example")
    with pytest.raises(ConfigurationError, match="http"):
        KeyProvider(token="kwt_x")
    monkeypatch.setenv("KEYWARD_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KEYWARD_TOKEN", "kwt_x")
    monkeypatch.setenv("KEYWARD_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ConfigurationError, match="only one"):
        KeyProvider()
    with pytest.raises(ConfigurationError, match="only one"):
        KeyProvider(token="kwt_x", token_file=str(tmp_path / "token"))
    kp = KeyProvider(token="kwt_secretsecret")  # an argument replaces both variables
    assert "kwt_secretsecret" not in repr(kp)
    kp.close()


def test_an_admin_token_needs_an_organization(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.admin) as kp:
        with pytest.raises(ConfigurationError, match="KEYWARD_ORG"):
            kp.resolve("openai")
    with KeyProvider(keyward.url, keyward.admin, org="acme") as kp:
        assert kp.resolve("openai").credential_name == "prod"


def test_unreachable_server(keyward: Keyward) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with KeyProvider(f"http://127.0.0.1:{port}", keyward.resolver, org="acme", timeout=5) as kp:
        with pytest.raises(KeywardConnectionError) as caught:
            kp.resolve("openai")
    assert caught.value.status is None
    keyward.assert_clean(str(caught.value) + repr(caught.value), "the exception")


def test_redirects_are_not_followed(keyward: Keyward) -> None:
    """The bearer must not go where a redirect points."""
    seen: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(307)
            self.send_header("Location", keyward.upstream.url + "/models")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    calls = len(keyward.upstream.calls)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with KeyProvider(url, keyward.resolver, org="acme") as kp:
            with pytest.raises(KeywardError) as caught:
                kp.resolve("openai")
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.status == 307
    assert seen == ["/api/v1/resolve"]
    assert len(keyward.upstream.calls) == calls


def test_a_fifo_token_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A FIFO would block the read until something writes to it; it is refused at once."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def call() -> None:
        with KeyProvider("http://127.0.0.1:9", token_file=str(fifo), org="acme", timeout=2) as kp:
            try:
                kp.resolve("openai")
            except BaseException as e:
                outcome.append(e)

    thread = threading.Thread(target=call, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(3)
    blocked = thread.is_alive()
    if blocked:  # a writer that goes away at once: the blocked read ends (empty), the test fails
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(3)
    assert not blocked, "reading the token file blocked"
    assert time.monotonic() - started < 1
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigurationError)
    assert "is not a regular file" in str(outcome[0])
    with KeyProvider("http://127.0.0.1:9", token_file=str(tmp_path), org="acme") as kp:
        with pytest.raises(ConfigurationError, match="is not a regular file"):
            kp.resolve("openai")  # a directory


def test_a_token_file_behind_symlinks_is_read(tmp_path: Path) -> None:
    """A Kubernetes projected token: ``token`` -> ``..data/token``, ``..data`` -> a dated
    directory holding the regular file."""
    dated = tmp_path / "..2024_06_01_12_00_00.123"
    dated.mkdir()
    (dated / "token").write_text("kwt_projected_token_value\n")
    (tmp_path / "..data").symlink_to(dated.name)
    (tmp_path / "token").symlink_to("..data/token")
    bearers: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        bearers.append(request.headers["authorization"])
        return httpx.Response(200, json={"items": []})

    with KeyProvider(
        "http://keyward.test",
        token_file=str(tmp_path / "token"),
        org="acme",
        transport=httpx.MockTransport(server),
    ) as kp:
        assert kp.providers() == []
    assert bearers == ["Bearer kwt_projected_token_value"]


def test_a_provider_config_can_be_copied_pickled_and_turned_into_a_dict(keyward: Keyward) -> None:
    with KeyProvider(keyward.url, keyward.resolver) as kp:
        config = kp.resolve("azure")
    copies = [copy.deepcopy(config), copy.copy(config), pickle.loads(pickle.dumps(config))]
    for other in copies:
        assert other == config
        assert other.api_key is not None
        assert other.api_key.get_secret_value() == keyward.azure_key
        assert dict(other.fields) == dict(config.fields)
        assert other.fields["endpoint"] == "https://acme-eu.openai.azure.com"
        assert repr(other) == repr(config)
        keyward.assert_clean(repr(other) + str(other) + repr(other.fields), "a copy's repr")
        with pytest.raises(TypeError):
            other.fields["endpoint"] = "https://elsewhere.example"  # type: ignore[index]
    as_dict = dataclasses.asdict(config)
    assert as_dict["fields"]["api_version"] == "2024-10-21"
    assert as_dict["env"][0]["name"] == config.env[0].name
    keyward.assert_clean(repr(as_dict) + str(as_dict), "asdict's repr")
    assert hash(copies[0]) == hash(config)
    assert dict(config.fields) == dict(json.loads(json.dumps(dict(config.fields))))
