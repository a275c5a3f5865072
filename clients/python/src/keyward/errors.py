"""The exceptions the package raises.

Every one is a :class:`KeywardError`. Messages are built from the server's ``detail`` (which the
server guarantees holds no secret) and the HTTP status; no message, ``repr`` or attribute of an
exception ever holds a provider key or the bearer token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "KeywardConnectionError",
    "KeywardError",
    "NoKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnavailableError",
]


class KeywardError(Exception):
    """An error from Keyward, or from talking to it.

    Attributes:
        status: the HTTP status of the server's answer, or ``None`` when there was no answer.
        detail: what went wrong, in the server's words when it answered.
        problem: the server's RFC 9457 problem+json object (empty when there was none).
    """

    def __init__(
        self,
        detail: str,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        super().__init__(detail if status is None else f"{detail} (HTTP {status})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class NoKeyError(KeywardError):
    """404 with ``"code": "no_credential"``: the organization has no key for the provider."""


class NotFoundError(KeywardError):
    """404: no such organization, credential, or route (another tenant's things look absent)."""


class AuthenticationError(KeywardError):
    """401: the bearer token is missing, unknown, revoked or expired."""


class PermissionDeniedError(KeywardError):
    """403: the token's role may not do this."""


class BadRequestError(KeywardError):
    """400 or 422: the request was refused as malformed (an unknown provider, a bad name)."""


class _RetryableError(KeywardError):
    """An error whose answer may say when to try again (``Retry-After``)."""

    def __init__(
        self,
        detail: str,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, status, problem)
        self.retry_after = retry_after


class UnavailableError(_RetryableError):
    """503: the server's store is unavailable; ``retry_after`` is in seconds, when given."""


class RateLimitedError(_RetryableError):
    """429: too many requests (or failed authentications); ``retry_after`` in seconds."""


class KeywardConnectionError(KeywardError):
    """The server could not be reached, or did not answer in time."""


class ConfigurationError(KeywardError):
    """The package's settings (``KEYWARD_URL``, ``KEYWARD_TOKEN``, ...) are missing or wrong."""
