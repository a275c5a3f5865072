"""What the sync and async providers share: the requests, the answers, the cache and the rules.

Every operation is written once, here, as a generator (a "flow"): it yields each HTTP call it
needs as a :class:`Call`, and is sent back the parsed JSON answer, or has the call's
:class:`~keyward.errors.KeywardError` thrown into it. :class:`~keyward.KeyProvider` drives a flow
with ``httpx.Client``, :class:`~keyward.AsyncKeyProvider` with ``httpx.AsyncClient``; they do the
I/O and nothing else (httpx's own ``Auth.auth_flow`` works the same way).
"""

from __future__ import annotations

import contextlib
import email.utils
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Collection, Generator, Hashable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._config import Settings
from ._files import private_file
from ._models import ProviderConfig, ProviderInfo
from ._secret import SecretStr
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    KeywardConnectionError,
    KeywardError,
    NoKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)

__version__ = "0.1.0"

_log = logging.getLogger("keyward")

T = TypeVar("T")
V = TypeVar("V")
Json = dict[str, Any]
Flow = Generator["Call", Json, T]
"""An operation: yields calls, is sent their answers, returns its result."""


@dataclass(frozen=True)
class Call:
    """One request to Keyward's API."""

    method: str
    path: str
    body: Json | None = None


class TtlCache(Generic[V]):
    """Values kept until a deadline on the monotonic clock, and no longer."""

    def __init__(self) -> None:
        self._items: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if time.monotonic() >= item[0]:
            self._items.pop(key, None)
            return None
        return item[1]

    def put(self, key: Hashable, value: V, ttl_ms: int | None) -> None:
        """Keeps ``value`` for ``ttl_ms`` milliseconds; nothing when ``ttl_ms`` is absent or 0."""
        if ttl_ms:
            self._items[key] = (time.monotonic() + ttl_ms / 1000.0, value)


class Core:
    """The state one provider keeps, and the translation between calls and HTTP."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        token_file: str | None,
        org: str | None,
        timeout: float,
        cache: bool,
        env_fallback: bool,
    ) -> None:
        self.settings = Settings.load(url, token, token_file, org, timeout)
        self.org: str | None = self.settings.org
        self.env_fallback = env_fallback
        self.resolved: TtlCache[ProviderConfig] | None = TtlCache() if cache else None
        self.env_answers: TtlCache[tuple[ProviderConfig, ...]] | None = (
            TtlCache() if cache else None
        )
        self.registry: tuple[ProviderInfo, ...] | None = None
        self.registered: frozenset[str] | None = None
        """Every variable the registry names (:func:`registry_variables`), once it is known."""

    def describe(self, cls: str) -> str:
        """The providers' ``repr``: the address and organization, never the token."""
        return f"{cls}(url={self.settings.url!r}, org={self.org!r})"

    def exchange(self, call: Call) -> Exchange:
        """A new exchange for ``call``: its deadline starts now."""
        return Exchange(self, call)


MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""The largest answer read (Keyward's biggest, the provider registry, is some tens of KiB)."""

_deadline: ContextVar[float | None] = ContextVar("keyward_deadline", default=None)
"""The monotonic deadline of the call this thread (or task) is making, for :func:`_capped`."""


class Exchange:
    """One call on the wire: the request, its deadline, and the answer as it arrives.

    ``timeout`` bounds the whole request (one call to the server; a method may make several,
    each with its own deadline). httpx's own timeouts are per read (a server that sends a byte
    every second would never trip them), so:

    * each request gets httpx timeouts (connect, pool, write, read) of the time left;
    * every read of a connection the client opens is capped to the time left: the connection's
      network stream is wrapped when it is made (httpcore's ``trace`` extension, see
      :func:`trace`) and again when an answer names it (the ``network_stream`` extension);
    * the body is streamed and the deadline checked as each chunk arrives, as is its size.

    The body is read as it arrives on the wire (``iter_raw``): httpx would inflate a gzip answer
    whatever the request asked for, and a few hundred bytes may inflate to gigabytes before any
    size is checked. Keyward never encodes its answers, so one with a ``Content-Encoding`` other
    than ``identity`` is refused as its headers arrive. (A transport that hands over a body it has
    read already, such as ``httpx.MockTransport``, is fed ``response.content`` instead.)

    A driver (sync or async) makes the HTTP calls, and only them::

        exchange = core.exchange(call)
        try:
            with deadline_of(exchange):
                with client.stream(**exchange.request(trace)) as response:
                    exchange.begin(response)
                    for chunk in response.iter_raw():
                        exchange.feed(chunk)
        except httpx.RequestError as error:
            failure = exchange.unreachable(error)
        if failure is not None:
            raise failure  # out of the except block: not chained to httpx's error
        return exchange.answer(response)

    The package's error is raised after the ``except`` block, never in it: raised there, it
    would keep httpx's error as its ``__context__`` (``from None`` only hides it from
    tracebacks), and that error's request carries the bearer token.
    """

    def __init__(self, core: Core, call: Call) -> None:
        self.core = core
        self.call = call
        self.deadline = time.monotonic() + core.settings.timeout
        self.body = bytearray()
        self.status: int | None = None
        """The answer's HTTP status, once its headers have arrived."""

    def left(self) -> float:
        """Seconds left before the deadline; raises when there are none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.too_slow()
        return left

    def request(self, trace: Any) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.stream`` (the token read now)."""
        headers = {
            "Authorization": f"Bearer {self.core.settings.bearer()}",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # what is counted is what arrives
            "User-Agent": f"keyward-python/{__version__}",
        }
        return {
            "method": self.call.method,
            "url": self.core.settings.url + self.call.path,
            "headers": headers,
            "json": self.call.body,
            "timeout": httpx.Timeout(self.left()),
            "extensions": {"trace": trace},
        }

    def begin(self, response: httpx.Response) -> None:
        """The answer's status and headers have arrived (in time?); its body is next."""
        _log.debug("%s %s -> %d", self.call.method, self.call.path, response.status_code)
        self.status = response.status_code
        self.left()
        _cap_reads(response.extensions.get("network_stream"))
        codings = response.headers.get_list("content-encoding", split_commas=True)
        if any(coding.strip().lower() != "identity" for coding in codings):
            raise self.encoded(response)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            raise self.too_large()

    def feed(self, chunk: bytes) -> None:
        """One more piece of the body, as it came on the wire."""
        self.body += chunk
        if len(self.body) > MAX_ANSWER_BYTES:
            raise self.too_large()
        self.left()

    def too_slow(self) -> KeywardConnectionError:
        _log.debug("%s %s: no whole answer in time", self.call.method, self.call.path)
        return KeywardConnectionError(
            f"no whole answer from Keyward at {self.core.settings.url} within "
            f"{self.core.settings.timeout:g} s"
        )

    def too_large(self) -> KeywardError:
        _log.debug("%s %s: answer over the size limit", self.call.method, self.call.path)
        return KeywardError(
            f"{self.call.method} {self.call.path}: the answer is larger than "
            f"{MAX_ANSWER_BYTES // (1024 * 1024)} MiB, larger than any Keyward sends",
            self.status,
        )

    def encoded(self, response: httpx.Response) -> KeywardError:
        _log.debug("%s %s: an encoded answer", self.call.method, self.call.path)
        shown = _redact(response.headers.get("content-encoding", ""), response.request)
        return KeywardError(
            f"{self.call.method} {self.call.path}: the answer is encoded (Content-Encoding: "
            f"{shown[:40]!r}), which Keyward never does; refused unread",
            self.status,
        )

    def unreachable(self, error: httpx.RequestError) -> KeywardError:
        """The error for a call that got no (whole) answer; the message names no token."""
        if isinstance(error, httpx.TimeoutException):
            return self.too_slow()
        reason = str(error) or type(error).__name__
        _log.debug("%s %s: no answer (%s)", self.call.method, self.call.path, type(error).__name__)
        with contextlib.suppress(RuntimeError):  # raised when there was no request yet
            reason = _redact(reason, error.request)
        return KeywardConnectionError(f"cannot reach Keyward at {self.core.settings.url}: {reason}")

    def answer(self, response: httpx.Response) -> Json:
        """The JSON object the answer carries, or the error it stands for."""
        call = self.call
        if 300 <= response.status_code < 400:
            raise KeywardError(
                "Keyward answered with a redirect, which is not followed (the token must not "
                "go elsewhere); set KEYWARD_URL to the server's final address",
                response.status_code,
            )
        if response.status_code >= 400:
            raise self._error(response)
        body = self._json()
        if not isinstance(body, dict):
            raise KeywardError(
                f"{call.method} {call.path}: the answer is not a JSON object",
                response.status_code,
            )
        return body

    def _json(self) -> object:
        try:
            return json.loads(bytes(self.body))
        except (ValueError, RecursionError):
            return None

    def _error(self, response: httpx.Response) -> KeywardError:
        problem = self._json()
        try:
            problem = _redact_all(problem, response.request)
        except RecursionError:
            problem = None
        if not isinstance(problem, dict):
            problem = {}
        status = response.status_code
        detail = problem.get("detail")
        if not isinstance(detail, str) or not detail:
            detail = _redact(response.reason_phrase or "error", response.request)
        if status in (429, 503):
            retry_after = _retry_after(response.headers.get("retry-after"))
            cls = RateLimitedError if status == 429 else UnavailableError
            return cls(detail, status, problem, retry_after)
        if status == 404 and problem.get("code") == "no_credential":
            return NoKeyError(detail, status, problem)
        kinds = {
            400: BadRequestError,
            401: AuthenticationError,
            403: PermissionDeniedError,
            404: NotFoundError,
            422: BadRequestError,
        }
        return kinds.get(status, KeywardError)(detail, status, problem)


@contextlib.contextmanager
def deadline_of(exchange: Exchange) -> Generator[None, None, None]:
    """Makes ``exchange``'s deadline the one capped reads obey, in this thread or task."""
    token = _deadline.set(exchange.deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def trace(name: str, info: Mapping[str, Any]) -> None:
    """httpcore's ``trace`` extension, for ``httpx.Client``: caps the reads of every connection
    made (its plain and its TLS stream) to the deadline of the call reading."""
    if name.endswith(
        (".connect_tcp.complete", ".connect_unix_socket.complete", ".start_tls.complete")
    ):
        _cap_reads(info.get("return_value"))


async def atrace(name: str, info: Mapping[str, Any]) -> None:
    """:func:`trace`, for ``httpx.AsyncClient`` (which awaits its trace callback)."""
    trace(name, info)


def _capped(timeout: float | None) -> float | None:
    """A read's timeout, no longer than the time left to the current call (if one is running:
    a connection may be used by another client, without a deadline)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), 0.001)  # past the deadline: time out at once
    return left if timeout is None else min(timeout, left)


def _cap_reads(stream: Any) -> None:
    """Wraps ``stream.read(max_bytes, timeout)`` (an httpcore network stream) so that no read
    waits past the current call's deadline; once per stream, and only where it can."""
    read = getattr(stream, "read", None)
    if read is None or getattr(stream, "_keyward_capped", False):
        return
    if inspect.iscoroutinefunction(read):

        async def capped_async(max_bytes: int, timeout: float | None = None) -> bytes:
            data: bytes = await read(max_bytes, _capped(timeout))
            return data

        wrapper: Any = capped_async
    else:

        def capped(max_bytes: int, timeout: float | None = None) -> bytes:
            data: bytes = read(max_bytes, _capped(timeout))
            return data

        wrapper = capped
    with contextlib.suppress(AttributeError, TypeError):  # a stream that takes no attributes
        stream.read = wrapper
        stream._keyward_capped = True


def _token_pattern(request: httpx.Request) -> re.Pattern[str] | None:
    """The bearer token ``request`` carried, to find in any case; None without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return re.compile(re.escape(token), re.IGNORECASE) if scheme == "Bearer" and token else None


def _redact(text: str, request: httpx.Request) -> str:
    """``text`` without the bearer token ``request`` carried, in any case, should anything quote
    it back (the server never does; a proxy in front of it might)."""
    pattern = _token_pattern(request)
    return text if pattern is None else pattern.sub("***", text)


def _redact_all(value: object, request: httpx.Request) -> object:
    """``value`` (parsed JSON) with the bearer token taken out of every string in it, keys too."""
    pattern = _token_pattern(request)
    if pattern is None:
        return value

    def clean(item: object) -> object:
        if isinstance(item, str):
            return pattern.sub("***", item)
        if isinstance(item, dict):
            return {clean(k): clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    return clean(value)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_unknown_provider(error: BadRequestError) -> bool:
    """Whether the server refused the provider as one it does not know (its ``code``; the
    words, from a server older than the code)."""
    code = error.problem.get("code")
    if code is not None:
        return bool(code == "unknown_provider")
    return error.detail.lower().startswith("unknown provider")


def _ttl(obj: Json) -> int | None:
    ttl = obj.get("cache_ttl_ms")
    return ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else None


_VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")

_COMPATIBLE_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*_(?:API_KEY|BASE_URL|API_BASE)\Z")
"""The variables a compatible provider's ``env_prefix`` makes (``LOCALAI_API_KEY``,
``LOCALAI_BASE_URL``, ``LOCALAI_API_BASE``): the registry cannot list them."""

UNSAFE_VARIABLES = frozenset(
    {
        # the shell, and where programs are looked for
        "PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV", "CDPATH", "PS4", "PROMPT_COMMAND",
        # where this package (and everything else) writes its files
        "TMPDIR", "XDG_RUNTIME_DIR",
        # interpreters' and runtimes' start-up options and search paths
        "NODE_OPTIONS", "NODE_PATH", "RUBYOPT", "RUBYLIB", "PERLLIB",
        "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "GCONV_PATH", "LOCPATH", "HOSTALIASES",
        # TLS: trusted certificates, configuration, key logs
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED", "OPENSSL_CONF", "OPENSSL_MODULES", "OPENSSL_ENGINES",
        "SSLKEYLOGFILE",
        # where requests go
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY",
        # commands other programs run for you, the C library's tuning
        "LESSOPEN", "LESSCLOSE", "GLIBC_TUNABLES",
    }
)  # fmt: skip
"""Variables a Keyward answer may never set: they change how programs load or run, where they
connect, or whom they trust (compared without regard to case)."""

UNSAFE_PREFIXES = (
    "LD_", "DYLD_", "PYTHON", "PERL5", "KEYWARD_", "SSL_CERT_", "BASH_FUNC_", "GIT_", "PIP_",
)  # fmt: skip
"""Families of such variables: the dynamic loaders', Python's, Perl's, this package's own, git's
(``GIT_CONFIG_*`` runs commands at a later ``git status``), pip's."""


def registry_variables(infos: Iterable[ProviderInfo]) -> frozenset[str]:
    """Every variable Keyward's registry names: each provider's ``secret_env``,
    ``base_url_env``, its public fields' ``env`` and its ``fixed_env``."""
    names: set[str] = set()
    for info in infos:
        names.update(info.secret_env, info.base_url_env)
        names.update(name for public in info.public_fields for name in public.env)
        names.update(name for name, _ in info.fixed_env)
    return frozenset(names)


def variable_name_problem(name: str, registered: Collection[str]) -> str | None:
    """Why the server's answer may not set variable ``name``; None when it may.

    An allow list: ``name`` must be one of ``registered`` (the variables of Keyward's registry,
    :func:`registry_variables`) or have the shape of a compatible provider's
    (``PREFIX_API_KEY``, ``PREFIX_BASE_URL``, ``PREFIX_API_BASE``); and, either way, not be one
    that changes how programs load or run (:data:`UNSAFE_VARIABLES`, :data:`UNSAFE_PREFIXES`).
    """
    if not _VARIABLE_NAME.match(name):
        return "is not an upper-case variable name ([A-Z][A-Z0-9_]*)"
    if name not in registered and not _COMPATIBLE_VARIABLE.match(name):
        return (
            "is neither a variable of Keyward's provider registry nor a compatible provider's "
            "(PREFIX_API_KEY, PREFIX_BASE_URL, PREFIX_API_BASE)"
        )
    upper = name.upper()
    if upper in UNSAFE_VARIABLES or upper.startswith(UNSAFE_PREFIXES):
        return "changes how programs load or run, and no provider's key or setting goes there"
    return None


def check_variables(configs: tuple[ProviderConfig, ...], registered: Collection[str]) -> None:
    """Raises :class:`KeywardError`, naming the variable (never its value), when any of
    ``configs`` would set a variable it must not (see :func:`variable_name_problem`), or one
    that cannot be set; else nothing."""
    for config in configs:
        for var in config.env:
            shown = repr(var.name[:80])
            problem = variable_name_problem(var.name, registered)
            if problem is not None:
                raise KeywardError(
                    f"the server's answer for {config.provider!r} sets the variable {shown}, "
                    f"which {problem}; nothing was changed"
                )
            value = config.api_key.get_secret_value() if var.secret and config.api_key else None
            if not var.file and "\0" in (var.value or value or ""):
                raise KeywardError(
                    f"the server's answer for {config.provider!r} gives the variable {shown} a "
                    "value with a NUL character, which no environment can hold; nothing was changed"
                )


def variables(config: ProviderConfig, registered: Collection[str]) -> dict[str, str]:
    """The variables ``config`` sets, from its ``env`` list: public values as they are, the key
    where an entry is secret, and for ``file`` entries the path of a private file holding it.
    Every name is checked (:func:`check_variables`) before anything is written."""
    check_variables((config,), registered)
    out: dict[str, str] = {}
    for var in config.env:
        if var.secret or var.file:
            if config.api_key is None:
                continue
            secret = config.api_key.get_secret_value()
            out[var.name] = private_file(secret) if var.file else secret
        elif var.value is not None:
            out[var.name] = var.value
    return out


def merged(configs: tuple[ProviderConfig, ...], registered: Collection[str]) -> dict[str, str]:
    """The variables of several configs together (the server refuses sets that collide), all
    of them checked before any is worked out."""
    check_variables(configs, registered)
    out: dict[str, str] = {}
    for config in configs:
        out.update(variables(config, registered))
    return out


# ----- flows --------------------------------------------------------------------------------


def organization(core: Core) -> Flow[str]:
    """The organization: the configured one, else the token's own, asked once."""
    if core.org is None:
        me = yield Call("GET", "/api/v1/whoami")
        org = me.get("org")
        if not isinstance(org, str) or not org:
            raise ConfigurationError(
                "this token belongs to no single organization (it is an admin's, or has several "
                "grants): set KEYWARD_ORG or pass org="
            )
        core.org = org
    return core.org


def resolve(
    core: Core, provider: str, name: str | None, modality: str | None
) -> Flow[ProviderConfig]:
    """``POST /api/v1/resolve``, through the cache."""
    org = yield from organization(core)
    key = (org, provider, name, modality)
    if core.resolved is not None:
        hit = core.resolved.get(key)
        if hit is not None:
            _log.debug("resolve %s: from the cache", provider)
            return hit
    body: Json = {"organization_id": org, "provider": provider}
    if name is not None:
        body["credential_name"] = name
    if modality is not None:
        body["modality"] = modality
    answer = yield Call("POST", "/api/v1/resolve", body)
    config = ProviderConfig.from_json(answer)
    if core.resolved is not None:
        core.resolved.put(key, config, _ttl(answer))
    return config


def env_configs(core: Core, providers: list[str] | None) -> Flow[tuple[ProviderConfig, ...]]:
    """``POST /api/v1/env`` (every provider with an active credential when ``providers`` is
    empty), through the cache, kept as long as the shortest-lived of its answers."""
    org = yield from organization(core)
    wanted = list(providers or [])
    key = (org, tuple(wanted))
    if core.env_answers is not None:
        hit = core.env_answers.get(key)
        if hit is not None:
            _log.debug("env: from the cache")
            return hit
    answer = yield Call("POST", "/api/v1/env", {"organization_id": org, "providers": wanted})
    items = answer.get("providers")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise KeywardError("the server's /api/v1/env answer has no `providers` list")
    configs = tuple(ProviderConfig.from_json(item) for item in items)
    if core.env_answers is not None and items:
        ttls = [_ttl(item) for item in items]
        if all(ttls):
            core.env_answers.put(key, configs, min(t for t in ttls if t))
    return configs


def registry(core: Core) -> Flow[tuple[ProviderInfo, ...]]:
    """``GET /api/v1/providers``, asked once for the provider's lifetime."""
    if core.registry is None:
        answer = yield Call("GET", "/api/v1/providers")
        items = answer.get("items")
        if not isinstance(items, list):
            raise KeywardError("the server's /api/v1/providers answer has no `items` list")
        core.registry = tuple(ProviderInfo.from_json(i) for i in items if isinstance(i, dict))
        core.registered = registry_variables(core.registry)
    return core.registry


def checked_variables(core: Core, configs: tuple[ProviderConfig, ...]) -> Flow[dict[str, str]]:
    """The variables ``configs`` set, every name checked first against the registry's (asked
    once per provider, and only when there is a name to check)."""
    registered: Collection[str] = ()
    if any(config.env for config in configs):
        yield from registry(core)
        assert core.registered is not None
        registered = core.registered
    return merged(configs, registered)


def env_mapping(core: Core, providers: list[str] | None) -> Flow[dict[str, str]]:
    """The variables of the organization's providers, for a subprocess's environment."""
    configs = yield from env_configs(core, providers)
    return (yield from checked_variables(core, configs))


def get_api_key(core: Core, provider: str) -> Flow[SecretStr | None]:
    """The key Keyward resolves; without one, the first of the provider's variables set here."""
    try:
        config: ProviderConfig | None = yield from resolve(core, provider, None, None)
    except NoKeyError:
        config = None
    except BadRequestError as e:
        if _is_unknown_provider(e):
            return None
        raise
    if config is not None and config.api_key is not None:
        return config.api_key
    if not core.env_fallback:
        return None
    infos = yield from registry(core)
    for info in infos:
        # Vertex's variable names a file, not the key: no fallback for it (nor in Open Notebook).
        if info.answers_to(provider) and info.secret != "service_account_json":
            for name in info.secret_env:
                value = os.environ.get(name)
                if value:
                    _log.debug("%s: key taken from this process's %s", provider, name)
                    return SecretStr(value)
    return None


def provision(core: Core, provider: str) -> Flow[bool]:
    """Sets the provider's variables in ``os.environ``; False (nothing changed) without a key."""
    try:
        config = yield from resolve(core, provider, None, None)
    except NoKeyError:
        _log.debug("%s: no key in Keyward; environment left as it was", provider)
        return False
    except BadRequestError as e:
        if _is_unknown_provider(e):
            _log.debug("%s: not a provider Keyward knows", provider)
            return False
        raise
    values = yield from checked_variables(core, (config,))
    os.environ.update(values)
    _log.debug("%s: set %s", provider, ", ".join(values) or "nothing")
    return True


def provision_all(core: Core) -> Flow[dict[str, bool]]:
    """Sets the variables of every provider the organization has a key for; says, for every
    provider of the registry and each of its aliases, whether it was set from Keyward."""
    infos = yield from registry(core)
    configs = yield from env_configs(core, None)
    values = yield from checked_variables(core, configs)
    os.environ.update(values)
    _log.debug("set %s", ", ".join(values) or "nothing")
    served = {config.provider for config in configs}
    results: dict[str, bool] = {}
    for info in infos:
        results[info.id] = info.id in served
        for alias in info.aliases:
            results.setdefault(alias, results[info.id])
    for provider in served:
        results.setdefault(provider, True)
    return results


def discover(core: Core, credential_id: str) -> Flow[list[str]]:
    """``POST /api/v1/credentials/{id}/discover``: the model names the provider lists."""
    answer = yield Call("POST", f"/api/v1/credentials/{quote(credential_id, safe='')}/discover")
    models = answer.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise KeywardError("the server's discover answer has no `models` list")
    return list(models)
