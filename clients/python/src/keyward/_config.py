"""Settings: the server's address, the token (or the file holding it), the organization.

Arguments win; what is not given comes from ``KEYWARD_URL``, ``KEYWARD_TOKEN``,
``KEYWARD_TOKEN_FILE`` and ``KEYWARD_ORG``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["MAX_TOKEN_FILE_BYTES", "Settings"]

MAX_TOKEN_FILE_BYTES = 64 * 1024
"""The largest token file read (a platform's JWT is a few KiB)."""


@dataclass(frozen=True)
class Settings:
    """What a provider needs to reach Keyward. The token never appears in ``repr``."""

    url: str
    """The server's base URL, without a trailing slash."""
    token: str | None = field(repr=False)
    """The bearer token, when given directly."""
    token_file: str | None
    """Else the file holding it, read again at every call (platform tokens rotate)."""
    org: str | None
    """The organization; ``None`` to ask ``/api/v1/whoami`` which one the token belongs to."""
    timeout: float

    @classmethod
    def load(
        cls,
        url: str | None,
        token: str | None,
        token_file: str | None,
        org: str | None,
        timeout: float,
    ) -> Settings:
        """Settings from the arguments, completed from the environment, and checked."""
        url = url if url is not None else os.environ.get("KEYWARD_URL")
        if not url:
            raise ConfigurationError(
                "KEYWARD_URL is not set: set it to the Keyward server's address "
                "(e.g. http://127.0.0.1:8080) or pass url="
            )
        if token is None and token_file is None:
            # Only when neither is given: an argument replaces both variables.
            token = os.environ.get("KEYWARD_TOKEN") or None
            token_file = os.environ.get("KEYWARD_TOKEN_FILE") or None
            where = "KEYWARD_TOKEN and KEYWARD_TOKEN_FILE"
        else:
            where = "token= and token_file="
        if token is not None and token_file is not None:
            raise ConfigurationError(f"{where} are both set; set only one of them")
        if token is None and token_file is None:
            raise ConfigurationError(
                "no Keyward token: set KEYWARD_TOKEN (e.g. a resolver token made with "
                "`keyward token create --role resolver --org ORG --name app`) or "
                "KEYWARD_TOKEN_FILE (a file holding it), or pass token= or token_file="
            )
        if token is not None:
            _check_token(token.strip(), "the token")
            token = token.strip()
        org = org if org is not None else (os.environ.get("KEYWARD_ORG") or None)
        if timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        return cls(_check_url(url), token, token_file, org, float(timeout))

    def bearer(self) -> str:
        """The token to send: the given one, or the token file's content as it is now."""
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        where = f"the token file {self.token_file!r} (KEYWARD_TOKEN_FILE)"
        # Each error is raised after its except block, so that it keeps no __context__ (the
        # decoding error would hold the file's bytes: the token).
        data: bytes | None = None
        reason = ""
        try:
            data = _read_regular_file(self.token_file, MAX_TOKEN_FILE_BYTES + 1, where)
        except OSError as e:
            reason = e.strerror or type(e).__name__
        if data is None:
            raise ConfigurationError(f"cannot read {where}: {reason}")
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise ConfigurationError(f"{where} is larger than 64 KiB")
        token: str | None = None
        with contextlib.suppress(UnicodeDecodeError):
            token = data.decode("utf-8").strip()
        if token is None:
            raise ConfigurationError(f"{where} is not UTF-8 text")
        _check_token(token, where)
        return token


def _read_regular_file(path: str, limit: int, where: str) -> bytes:
    """At most ``limit`` bytes of ``path``, which must be a regular file once links are followed
    (a platform's projected token is a link to one): a FIFO or a device would block the read, or
    never end. Checked before opening, and again on what was opened (opened non-blocking, so
    that a FIFO put in its place meanwhile cannot hold the open either)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ConfigurationError(f"{where} is not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigurationError(f"{where} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is a plain http(s) address."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "KEYWARD_URL must be an http:// or https:// address, e.g. http://127.0.0.1:8080"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "KEYWARD_URL must not hold a user name or password (the token is sent as a bearer)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("KEYWARD_URL must not have a query or a fragment")
    return url.strip().rstrip("/")


def _check_token(token: str, where: str) -> None:
    """Refuses an empty token, or one that could not be a header value; never quotes it."""
    if not token:
        raise ConfigurationError(f"{where} is empty")
    if any(not ("!" <= c <= "~") for c in token):
        raise ConfigurationError(
            f"{where} holds spaces, control or non-ASCII characters; it cannot be a bearer token"
        )
