"""The typed answers: a resolved :class:`ProviderConfig` and the registry's :class:`ProviderInfo`.

Both are parsed from the server's JSON by the ``from_json`` functions here, which accept only the
types the API documents and raise :class:`~keyward.errors.KeywardError` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._secret import SecretStr
from .errors import KeywardError

__all__ = ["EnvVar", "FrozenFields", "ProviderConfig", "ProviderInfo", "PublicField"]

# Members of a config object that are not public fields of the credential.
_NOT_FIELDS = frozenset(
    {
        "provider",
        "api_key",
        "key_hint",
        "credential_id",
        "credential_name",
        "source",
        "env",
        "cache_ttl_ms",
    }
)


class FrozenFields(Mapping[str, str]):
    """A read-only mapping of a credential's public fields: it can be read like a dict, hashed,
    copied (``copy.deepcopy``, ``dataclasses.asdict``) and pickled, and not changed."""

    __slots__ = ("_items",)
    _items: dict[str, str]

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, name: str) -> str:
        value: str = self._items[name]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenFields({self._items!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self) -> tuple[type[FrozenFields], tuple[dict[str, str]]]:
        return (type(self), (dict(self._items),))


@dataclass(frozen=True)
class EnvVar:
    """One variable a credential sets (an item of the config object's ``env`` list)."""

    name: str
    value: str | None = None
    """The value, for public variables."""
    secret: bool = False
    """Its value is the key (``api_key``)."""
    file: bool = False
    """Its value is the path of a private file holding the key (Vertex's service account)."""


@dataclass(frozen=True, repr=False)
class ProviderConfig:
    """What Keyward resolved for one provider: the key and the public settings that go with it.

    ``repr()`` and ``str()`` show the key's hint (``sk-...wxyz``), never the key.
    """

    provider: str
    """The provider's id (``openai``, ``azure_openai``, ...), also when asked by an alias."""
    api_key: SecretStr | None
    """The key (``None`` for a provider that needs none, such as a local Ollama)."""
    key_hint: str | None = None
    """What may be shown of the key."""
    base_url: str | None = None
    endpoint: str | None = None
    api_version: str | None = None
    deployment: str | None = None
    project: str | None = None
    location: str | None = None
    organization: str | None = None
    credential_id: str | None = None
    """The credential that answered (``None`` when the server's environment did)."""
    credential_name: str | None = None
    source: str | None = None
    """``vault``, or ``env:VARIABLE`` when the server's own environment answered."""
    fields: Mapping[str, str] = field(default_factory=FrozenFields, hash=False)
    """Every public field of the credential (read-only), including those above."""
    env: tuple[EnvVar, ...] = ()
    """Exactly the variables this credential sets, in order."""

    def __repr__(self) -> str:
        shown = [f"provider={self.provider!r}", f"key_hint={self.key_hint!r}"]
        shown += [
            f"{name}={getattr(self, name)!r}"
            for name in ("credential_name", "source", "base_url", "endpoint")
            if getattr(self, name) is not None
        ]
        return f"ProviderConfig({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ProviderConfig:
        """Parses one config object (of ``/api/v1/resolve`` or an item of ``/api/v1/env``)."""
        provider = _text(obj, "provider")
        if provider is None:
            raise KeywardError("the server's config object has no provider")
        key = obj.get("api_key")
        if key is not None and not isinstance(key, str):
            raise KeywardError(f"the server's config object for {provider} has a malformed key")
        fields = {
            name: value
            for name, value in obj.items()
            if name not in _NOT_FIELDS and isinstance(value, str)
        }
        raw_env = obj.get("env")
        if not isinstance(raw_env, list):
            raise KeywardError(
                f"the server's config object for {provider} has no `env` list: "
                "this Keyward server is too old for this client"
            )
        return cls(
            provider=provider,
            api_key=None if key is None else SecretStr(key),
            key_hint=_text(obj, "key_hint"),
            base_url=fields.get("base_url"),
            endpoint=fields.get("endpoint"),
            api_version=fields.get("api_version"),
            deployment=fields.get("deployment"),
            project=fields.get("project"),
            location=fields.get("location"),
            organization=fields.get("organization"),
            credential_id=_text(obj, "credential_id"),
            credential_name=_text(obj, "credential_name"),
            source=_text(obj, "source"),
            fields=FrozenFields(fields),
            env=tuple(_env_var(item, provider) for item in raw_env),
        )


def _env_var(item: object, provider: str) -> EnvVar:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise KeywardError(f"the server's `env` list for {provider} holds a malformed entry")
    value = item.get("value")
    return EnvVar(
        name=item["name"],
        value=value if isinstance(value, str) else None,
        secret=item.get("secret") is True,
        file=item.get("file") is True,
    )


@dataclass(frozen=True)
class PublicField:
    """A public field a provider's credentials take, and the variables it sets."""

    name: str
    env: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class ProviderInfo:
    """One provider of Keyward's registry (``GET /api/v1/providers``)."""

    id: str
    display_name: str
    aliases: tuple[str, ...] = ()
    """Other names the server accepts for it (Open Notebook's ``google``, ``azure``)."""
    secret_env: tuple[str, ...] = ()
    """The variables that may hold its key, in the order the environment fallback reads them."""
    base_url_env: tuple[str, ...] = ()
    public_fields: tuple[PublicField, ...] = ()
    fixed_env: tuple[tuple[str, str], ...] = ()
    default_base_url: str | None = None
    needs_base_url: bool = False
    """Its credentials must name a base URL (``openai_compatible``, ...)."""
    secret: str | None = None
    """``api_key``, ``service_account_json``, ``aws_secret_access_key`` or ``optional``."""
    auth: str | None = None

    def answers_to(self, name: str) -> bool:
        """Whether ``name`` is this provider's id or an alias, as the server matches them."""
        wanted = name.strip().lower().replace("-", "_")
        return wanted == self.id or wanted in self.aliases

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ProviderInfo:
        """Parses one item of ``/api/v1/providers``."""
        pid = _text(obj, "id")
        if pid is None:
            raise KeywardError("the server's provider list has an entry without an id")
        return cls(
            id=pid,
            display_name=_text(obj, "display_name") or pid,
            aliases=_texts(obj.get("aliases")),
            secret_env=_texts(obj.get("secret_env")),
            base_url_env=_texts(obj.get("base_url_env")),
            public_fields=tuple(
                PublicField(
                    name=str(f.get("name", "")),
                    env=_texts(f.get("env")),
                    required=f.get("required") is True,
                )
                for f in obj.get("public_fields") or ()
                if isinstance(f, dict)
            ),
            fixed_env=tuple(
                (pair[0], pair[1])
                for pair in obj.get("fixed_env") or ()
                if isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(p, str) for p in pair)
            ),
            default_base_url=_text(obj, "default_base_url"),
            needs_base_url=obj.get("needs_base_url") is True,
            secret=_text(obj, "secret"),
            auth=_text(obj, "auth"),
        )


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) else None


def _texts(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
