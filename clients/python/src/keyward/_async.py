"""``AsyncKeyProvider``: the asyncio client, on ``httpx.AsyncClient``."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

import httpx

from . import _client as flows
from ._client import Call, Core, Flow, Json
from ._models import ProviderConfig, ProviderInfo
from ._secret import SecretStr
from .errors import KeywardError

__all__ = ["AsyncKeyProvider"]

T = TypeVar("T")


class AsyncKeyProvider:
    """Keys and provider settings from a Keyward server, for asyncio: :class:`KeyProvider`'s
    arguments and methods, each method a coroutine. An instance belongs to one event loop.

    Args:
        url: the server's address (default ``KEYWARD_URL``), http or https.
        token: a Keyward token, usually a ``resolver`` token (default ``KEYWARD_TOKEN``).
        token_file: a file holding the token instead, read again at every call
            (default ``KEYWARD_TOKEN_FILE``); not with ``token``.
        org: the organization (default ``KEYWARD_ORG``, else the token's own, asked once).
        timeout: the deadline, in seconds, of each request to the server (connecting, the
            headers, the whole body), not of a method call: a method may make several
            requests, each given the whole ``timeout``. ``get_api_key``,
            ``provision_provider_keys``, ``provision_all_keys`` and ``env`` may also ask
            the provider registry (once per provider object), and the first call asks
            ``/api/v1/whoami`` when no organization is given.
        cache: keep resolutions for as long as the server's own cache does (``cache_ttl_ms``).
        env_fallback: let :meth:`get_api_key` fall back to this process's environment.
        transport: an httpx transport to send requests through (for tests and proxies).

    Raises:
        ConfigurationError: a setting is missing or malformed.

    Redirects are never followed: the token goes to ``url`` and nowhere else.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        org: str | None = None,
        *,
        timeout: float = 10.0,
        cache: bool = True,
        env_fallback: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = Core(url, token, token_file, org, timeout, cache, env_fallback)
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport)

    async def resolve(
        self, provider: str, name: str | None = None, modality: str | None = None
    ) -> ProviderConfig:
        """The organization's key for ``provider`` and its settings (``POST /api/v1/resolve``).

        ``name`` picks one credential; ``modality`` one that serves it (``language``,
        ``embedding``, ...). Raises :class:`~keyward.errors.NoKeyError` when there is none.
        """
        return await self._run(flows.resolve(self._core, provider, name, modality))

    async def env(self, providers: list[str] | None = None) -> dict[str, str]:
        """The variables of the organization's providers (all with a key, or those named), for
        a subprocess: ``subprocess.run(cmd, env={**os.environ, **kp.env(["openai"])})``.
        ``os.environ`` is not changed."""
        return await self._run(flows.env_mapping(self._core, providers))

    async def get_api_key(self, provider: str) -> SecretStr | None:
        """The key Keyward resolves for ``provider``; without one, the first of the provider's
        key variables set in this process (unless ``env_fallback=False``); else ``None``."""
        return await self._run(flows.get_api_key(self._core, provider))

    async def provision_provider_keys(self, provider: str) -> bool:
        """Sets ``provider``'s variables in ``os.environ`` and returns True; returns False, and
        changes nothing, when the organization has no key for it or Keyward does not know it."""
        return await self._run(flows.provision(self._core, provider))

    async def provision_all_keys(self) -> dict[str, bool]:
        """Sets the variables of every provider the organization has a key for; returns, for
        every provider Keyward knows (and its aliases), whether it was set."""
        return await self._run(flows.provision_all(self._core))

    async def discover_models(self, credential_id: str) -> list[str]:
        """The models a credential's provider lists (needs an org_admin or admin token)."""
        return await self._run(flows.discover(self._core, credential_id))

    async def providers(self) -> list[ProviderInfo]:
        """Keyward's provider registry (asked once for this provider's lifetime)."""
        return list(await self._run(flows.registry(self._core)))

    async def close(self) -> None:
        """Closes the HTTP connections."""
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncKeyProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return self._core.describe(type(self).__name__)

    async def _run(self, flow: Flow[T]) -> T:
        """Drives ``flow``: sends each call it yields and hands it the answer or the error."""
        try:
            call = next(flow)
            while True:
                try:
                    answer: Json | KeywardError = await self._send(call)
                except KeywardError as e:
                    answer = e
                # Out of the except block: what the flow raises next is not chained to it.
                if isinstance(answer, KeywardError):
                    call = flow.throw(answer)
                    continue
                call = flow.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, call: Call) -> Json:
        """One call: the answer's JSON object, within the deadline and the size limit."""
        exchange = self._core.exchange(call)
        failure: KeywardError | None = None
        try:
            with flows.deadline_of(exchange):
                async with self._http.stream(**exchange.request(flows.atrace)) as response:
                    exchange.begin(response)
                    if response.is_stream_consumed:  # read by the transport (httpx.MockTransport)
                        exchange.feed(response.content)
                    else:
                        async for chunk in response.aiter_raw():  # as sent: never inflated
                            exchange.feed(chunk)
        except httpx.RequestError as e:
            failure = exchange.unreachable(e)
        if failure is not None:
            # Raised out of the except block, so that it keeps no __context__: httpx's error
            # holds the request, and the request the bearer token.
            raise failure
        return exchange.answer(response)
