"""The product's own error base class.

Every failure a user can act on (a bad manifest, a tampered bundle, a frame that does not fit its scanner, a
missing key file) raises a subclass whose message names the file, row or field and the problem. Command
lines catch this class, and only this class, to print one clear line instead of a traceback; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class FattyLiverError(Exception):
    """A failure the user can act on; the message says what is wrong and where."""
