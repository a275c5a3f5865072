"""Open Notebook's three functions, imported from ``keyward`` instead, used as Open Notebook does:
``await provision_provider_keys(...)`` with ``KEYWARD_URL`` and ``KEYWARD_TOKEN`` set."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest
from conftest import Keyward

import keyward
from keyward import (
    AuthenticationError,
    NotFoundError,
    SecretStr,
    get_api_key,
    provision_all_keys,
    provision_provider_keys,
)


def test_openai_is_provisioned(acme_env: Keyward) -> None:
    assert asyncio.run(provision_provider_keys("openai")) is True
    assert os.environ["OPENAI_API_KEY"] == acme_env.openai_key
    assert os.environ["OPENAI_BASE_URL"] == acme_env.upstream.url
    assert os.environ["OPENAI_API_BASE"] == acme_env.upstream.url


def test_azure_by_open_notebook_name(acme_env: Keyward) -> None:
    assert asyncio.run(provision_provider_keys("azure")) is True
    assert os.environ["AZURE_OPENAI_API_KEY"] == acme_env.azure_key
    assert os.environ["AZURE_OPENAI_ENDPOINT"] == "https://acme-eu.openai.azure.com"
    assert os.environ["AZURE_OPENAI_API_VERSION"] == "2024-10-21"
    assert os.environ["OPENAI_API_VERSION"] == "2024-10-21"


def test_vertex_service_account_goes_to_a_private_file(acme_env: Keyward) -> None:
    assert asyncio.run(provision_provider_keys("vertex")) is True
    path = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path) as f:
        assert json.load(f) == json.loads(acme_env.vertex_json)
    assert os.environ["VERTEX_PROJECT"] == "acme-vertex"
    assert os.environ["VERTEX_LOCATION"] == "europe-west4"
    # The same content again: the same file, not another copy of the key.
    assert asyncio.run(provision_provider_keys("vertex")) is True
    assert os.environ["GOOGLE_APPLICATION_CREDENTIALS"] == path


def test_no_key_returns_false_and_leaves_the_environment(
    keyward: Keyward, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_TOKEN", keyward.resolver_beta)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-shell-0123456789abcdef")
    before = dict(os.environ)
    assert asyncio.run(provision_provider_keys("openai")) is False
    assert dict(os.environ) == before
    key = asyncio.run(get_api_key("openai"))
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == "sk-from-the-shell-0123456789abcdef"
    assert dict(os.environ) == before


def test_no_key_and_no_variable_gives_none(
    keyward: Keyward, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_TOKEN", keyward.resolver_beta)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert asyncio.run(get_api_key("anthropic")) is None


def test_providers_it_does_not_know_are_false(acme_env: Keyward) -> None:
    before = dict(os.environ)
    assert asyncio.run(provision_provider_keys("no-such-provider")) is False
    assert asyncio.run(get_api_key("no-such-provider")) is None
    # Open Notebook's names the organization has no key for.
    for name in ("openai_compatible", "openai-compatible", "anthropic_compatible", "google"):
        assert asyncio.run(provision_provider_keys(name)) is False, name
    assert dict(os.environ) == before


def test_get_api_key_hides_the_key(acme_env: Keyward) -> None:
    key = asyncio.run(get_api_key("openai"))
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == acme_env.openai_key
    assert repr(key) == "SecretStr('**********')"
    assert str(key) == "**********"
    acme_env.assert_clean(repr(key) + str(key) + f"{key}")


def test_provision_all_keys(acme_env: Keyward) -> None:
    results = asyncio.run(provision_all_keys())
    for name in ("openai", "azure_openai", "azure", "vertex"):
        assert results[name] is True, name
    for name in (
        "anthropic",
        "gemini",
        "google",
        "openai_compatible",
        "anthropic_compatible",
        "groq",
        "ollama",
    ):
        assert results[name] is False, name
    assert all(isinstance(v, bool) for v in results.values())
    assert os.environ["OPENAI_API_KEY"] == acme_env.openai_key
    assert os.environ["AZURE_OPENAI_API_KEY"] == acme_env.azure_key
    assert os.path.isfile(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])


def test_asyncio_run_twice_and_concurrent_calls(acme_env: Keyward) -> None:
    """Each event loop gets its own default client: a second ``asyncio.run`` works."""
    assert asyncio.run(provision_provider_keys("openai")) is True

    async def both() -> list[bool]:
        return list(
            await asyncio.gather(
                provision_provider_keys("openai"), provision_provider_keys("azure")
            )
        )

    assert asyncio.run(both()) == [True, True]
    assert asyncio.run(provision_provider_keys("openai")) is True


def test_a_bad_token_raises_instead_of_returning_false(
    keyward: Keyward, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoked = keyward.new_token("resolver", "acme")
    keyward.api("DELETE", f"/api/v1/tokens/{revoked['id']}")
    garbage = "kwt_" + "x" * 40
    keyward.secrets.append(garbage)
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_ORG", "acme")
    for token in (revoked["token"], garbage):
        monkeypatch.setenv("KEYWARD_TOKEN", token)
        before = dict(os.environ)
        with pytest.raises(AuthenticationError) as caught:
            asyncio.run(provision_provider_keys("openai"))
        assert caught.value.status == 401
        assert dict(os.environ) == before
        keyward.assert_clean(str(caught.value) + repr(caught.value), "the exception")


def test_another_organization_is_an_error_not_false(
    keyward: Keyward, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYWARD_URL", keyward.url)
    monkeypatch.setenv("KEYWARD_TOKEN", keyward.resolver)
    monkeypatch.setenv("KEYWARD_ORG", "beta")  # not this token's organization
    with pytest.raises(NotFoundError):
        asyncio.run(provision_provider_keys("openai"))


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(keyward.ConfigurationError, match="KEYWARD_URL"):
        asyncio.run(provision_provider_keys("openai"))
    monkeypatch.setenv("KEYWARD_URL", "http://127.0.0.1:9")
    with pytest.raises(keyward.ConfigurationError, match="KEYWARD_TOKEN"):
        asyncio.run(provision_provider_keys("openai"))
