"""Errors a user can fix: shown by the command line as ``error: <message>`` (exit status 2), without a traceback.

Raise :class:`ConfigError` for a mistake in the input (a bad value, an env MBPO cannot train on, a checkpoint that
does not fit the run); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys


class ConfigError(ValueError):
    """A mistake in the user's config, command line, environment choice or checkpoint; the message says the fix."""


class NonFiniteError(FloatingPointError):
    """A loss became NaN/inf: training stops (``MBPOLoop`` saves a diagnostic checkpoint first)."""


def require_positive(section: str, **values: int) -> None:
    """Raise a :class:`ConfigError` naming ``section.key`` for the first value below 1."""
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{section}.{name}={value} must be >= 1.")


def exit_with_error(err: ConfigError) -> None:
    """What every command does with a :class:`ConfigError`: ``error: <message>`` on stderr, exit status 2."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None
