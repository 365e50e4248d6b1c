"""Errors a user can fix: shown by the command line as ``error: <message>`` (exit status 2), without a traceback.

Raise :class:`ConfigError` for a mistake in the input (a bad value, an env MBPO cannot train on, a checkpoint that
does not fit the run); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A mistake in the user's config, command line, environment choice or checkpoint; the message says the fix."""
