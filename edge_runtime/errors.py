"""The product's own error classes.

Every failure a user can act on (a bad manifest, a tampered bundle, a frame that does not fit its scanner, a
missing key file, a bad setting) raises a subclass of :class:`FattyLiverError` whose message names the file,
row or field and the problem. Each command-line group catches this class, and only this class, to print one
clear line instead of a traceback (``edge_runtime.tools.cli_support.ProductGroup``); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class FattyLiverError(Exception):
    """A failure the user can act on; the message says what is wrong and where."""


class ConfigError(FattyLiverError):
    """A configuration (edge.toml, a flag, a training or export setting) is unreadable or invalid; the message
    lists every problem."""
