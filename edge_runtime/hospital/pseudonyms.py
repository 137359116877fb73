"""Keyed pseudonyms for patient IDs and accession numbers: what leaves the hospital's own folder, and what the audit
log keeps so that MRI-PDFF arriving weeks later can be matched to the exam without a patient field on the box's disk.

An HMAC-SHA256 under the site's own secret key, not a plain hash: medical record numbers are few and guessable, so
an unkeyed hash could be reversed by hashing every possible number. The key is created once (32 random bytes, mode
0600) and stays at the site; the same key at the box and at the reconciliation gives the same pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from edge_runtime.errors import ConfigError

KEY_BYTES = 32
PSEUDONYM_HEX = 20  # 80 bits: no collision among a hospital's patients, short enough for a log line


def identity_key(path: str | Path, create: bool = True) -> bytes:
    """The site's pseudonym key from its file, created on first use when ``create``; ConfigError naming the file
    when it cannot be read or is not a key."""
    path = Path(path)
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as fh:
            fh.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a pseudonym key ({KEY_BYTES * 2} hex digits): {exc}") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path}: a pseudonym key is {KEY_BYTES * 2} hex digits, this one {len(key) * 2}")
    return key


def pseudonym(key: bytes, kind: str, value: str) -> str | None:
    """The keyed pseudonym of one identifier of a kind ('patient', 'accession'); None for an empty one, which
    names nobody."""
    value = (value or "").strip()
    if not value:
        return None
    digest = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX]
