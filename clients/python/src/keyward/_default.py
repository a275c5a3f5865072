"""Open Notebook's functions, on a default :class:`AsyncKeyProvider` made from the environment.

``from keyward import provision_provider_keys`` replaces
``from open_notebook.ai.key_provider import provision_provider_keys``: the same names, arguments
and results, with keys from Keyward (``KEYWARD_URL`` and ``KEYWARD_TOKEN`` or
``KEYWARD_TOKEN_FILE``) instead of Open Notebook's database.

An ``httpx.AsyncClient`` belongs to the event loop it first ran on, so there is one default
provider per running loop: ``asyncio.run()`` called twice gets two, and the first is dropped
once its loop is closed. Nothing tells a provider that its loop is ending, so the default ones
keep no idle connection open (each request opens its own): none is left behind on a closed loop.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

from ._async import AsyncKeyProvider
from ._secret import SecretStr

__all__ = ["default_provider", "get_api_key", "provision_all_keys", "provision_provider_keys"]

_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncKeyProvider] = (
    weakref.WeakKeyDictionary()
)


def default_provider() -> AsyncKeyProvider:
    """The running loop's default provider, made from ``KEYWARD_*`` on first use."""
    loop = asyncio.get_running_loop()
    provider = _by_loop.get(loop)
    if provider is None:
        for old in [old for old in _by_loop if old.is_closed()]:
            del _by_loop[old]  # its client holds the loop; free both
        no_idle = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        provider = _by_loop[loop] = AsyncKeyProvider(transport=no_idle)
    return provider


async def provision_provider_keys(provider: str) -> bool:
    """Sets the provider's variables (``OPENAI_API_KEY``, ...) in ``os.environ`` from Keyward.

    Returns True when they were set; False, with ``os.environ`` left exactly as it was, when the
    organization has no key for the provider or Keyward does not know the provider. Any other
    failure (a bad token, an unreachable server) raises :class:`~keyward.errors.KeywardError`.
    """
    return await default_provider().provision_provider_keys(provider)


async def provision_all_keys() -> dict[str, bool]:
    """Sets the variables of every provider the organization has a key for, in one request.

    Returns an entry for every provider Keyward knows, and for Open Notebook's names of them
    (``google``, ``azure``): True for those set from Keyward.
    """
    return await default_provider().provision_all_keys()


async def get_api_key(provider: str) -> SecretStr | None:
    """The provider's key from Keyward; without one, from this process's environment; else None."""
    return await default_provider().get_api_key(provider)
