"""``SecretStr``: pydantic's when pydantic is installed, else a small equivalent.

Either way, ``str()`` and ``repr()`` show ``**********`` and the value comes out only through
``get_secret_value()``.
"""

from __future__ import annotations

__all__ = ["SecretStr"]

try:
    from pydantic import SecretStr  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - exercised only without the pydantic extra

    class SecretStr:  # type: ignore[no-redef]
        """A string that does not show itself: the same interface as ``pydantic.SecretStr``."""

        __slots__ = ("_secret_value",)

        def __init__(self, secret_value: str) -> None:
            self._secret_value = secret_value

        def get_secret_value(self) -> str:
            """The secret itself."""
            return self._secret_value

        def __repr__(self) -> str:
            return "SecretStr('**********')" if self._secret_value else "SecretStr('')"

        def __str__(self) -> str:
            return "**********" if self._secret_value else ""

        def __eq__(self, other: object) -> bool:
            return (
                isinstance(other, SecretStr) and self.get_secret_value() == other.get_secret_value()
            )

        def __hash__(self) -> int:
            return hash(self._secret_value)

        def __len__(self) -> int:
            return len(self._secret_value)

        def __bool__(self) -> bool:
            return bool(self._secret_value)
