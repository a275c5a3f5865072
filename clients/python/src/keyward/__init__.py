"""Keyward's Python client: provider keys from a Keyward server, for Python programs.

Drop-in for Open Notebook's key provider::

    from keyward import provision_provider_keys     # was: from open_notebook.ai.key_provider

    await provision_provider_keys("openai")         # OPENAI_API_KEY, OPENAI_BASE_URL, ... set

with ``KEYWARD_URL`` and ``KEYWARD_TOKEN`` (a resolver token) in the environment. The clients
:class:`KeyProvider` and :class:`AsyncKeyProvider` give the same and more (``resolve``, ``env``
for subprocesses, ``discover_models``).
"""

from ._async import AsyncKeyProvider
from ._client import __version__
from ._default import get_api_key, provision_all_keys, provision_provider_keys
from ._files import remove_private_files
from ._models import EnvVar, ProviderConfig, ProviderInfo, PublicField
from ._secret import SecretStr
from ._sync import KeyProvider
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

__all__ = [
    "AsyncKeyProvider",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "EnvVar",
    "KeyProvider",
    "KeywardConnectionError",
    "KeywardError",
    "NoKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderConfig",
    "ProviderInfo",
    "PublicField",
    "RateLimitedError",
    "SecretStr",
    "UnavailableError",
    "__version__",
    "get_api_key",
    "provision_all_keys",
    "provision_provider_keys",
    "remove_private_files",
]
