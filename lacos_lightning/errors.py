"""User-facing errors: bad config or bad input, reported in one line with exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any


class LacosError(Exception):
    """A problem the user can fix (config value, missing file, bad data). Exit code 2."""


class ConfigError(LacosError, ValueError):
    """A config value that is impossible or unknown."""


class DataError(LacosError, ValueError):
    """Input data that is missing, malformed or empty."""


class HubUnavailableError(LacosError, OSError):
    """A model or dataset name could not be resolved locally and the hub cannot be reached."""


def require(condition: bool, message: str, error: type[LacosError] = ConfigError) -> None:
    """Raise ``error(message)`` when ``condition`` is false."""
    if not condition:
        raise error(message)


def exit_on_user_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`LacosError` into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LacosError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
